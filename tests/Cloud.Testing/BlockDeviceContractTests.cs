using Cloud.Storage.Devices;
using Xunit;

namespace Cloud.Testing;

/// <summary>
/// The behaviour every <see cref="IBlockDevice"/> must show. Subclass it and implement
/// <see cref="CreateDeviceAsync"/> to run the whole contract against a device: the engine's tests run it on memory
/// and files, the page-blob tests on Azurite. xunit finds the inherited tests in each subclass's own test project.
/// </summary>
public abstract class BlockDeviceContractTests
{
    /// <summary>The capacity the contract asks for: 1 MiB, small enough for any backend.</summary>
    protected const long ContractCapacityBytes = 1 << 20;

    /// <summary>Creates a fresh, zero-filled device of at least <paramref name="capacityBytes"/> bytes.</summary>
    protected abstract ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes);

    [Fact]
    public async Task Geometry_IsConsistent()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        Assert.False(string.IsNullOrEmpty(device.Name));
        Assert.Contains(device.SectorSizeBytes, new[] { 512, 1024, 2048, 4096 });
        Assert.True(
            device.CapacityBytes >= ContractCapacityBytes,
            $"capacity {device.CapacityBytes} < {ContractCapacityBytes}");
        Assert.Equal(0, device.CapacityBytes % device.SectorSizeBytes);
        Assert.True(device.MaxInFlightIo >= 1);
    }

    [Fact]
    public async Task FreshDevice_ReadsZeroes()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        var buffer = Blocks.Pattern(8192, 1);
        await device.ReadAsync(device.CapacityBytes - 8192, buffer);
        Assert.All(buffer, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Write_ThenRead_ReturnsSameBytes_AtStartMiddleAndEnd()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        var sector = device.SectorSizeBytes;
        long[] offsets = [0, sector * 8L, device.CapacityBytes / 2, device.CapacityBytes - 4 * sector];
        for (var i = 0; i < offsets.Length; i++)
            await device.WriteAsync(offsets[i], Blocks.Pattern(4 * sector, i));
        for (var i = 0; i < offsets.Length; i++)
        {
            var back = new byte[4 * sector];
            await device.ReadAsync(offsets[i], back);
            Assert.Equal(Blocks.Pattern(4 * sector, i), back);
        }
    }

    [Fact]
    public async Task Write_LeavesNeighbouringSectorsUntouched()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        var sector = device.SectorSizeBytes;
        await device.WriteAsync(0, Blocks.Pattern(3 * sector, 7));
        await device.WriteAsync(sector, new byte[sector]);
        var back = new byte[3 * sector];
        await device.ReadAsync(0, back);
        var expected = Blocks.Pattern(3 * sector, 7);
        Array.Clear(expected, sector, sector);
        Assert.Equal(expected, back);
    }

    [Fact]
    public async Task ConcurrentWrites_ToDistinctRanges_AllPersist()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        const int writes = 32;
        var size = 8 * device.SectorSizeBytes;
        await Task.WhenAll(
            Enumerable.Range(
                0, writes).Select(i => device.WriteAsync((long)i * size, Blocks.Pattern(size, 100 + i)).AsTask()));
        await device.FlushAsync();
        for (var i = 0; i < writes; i++)
        {
            var back = new byte[size];
            await device.ReadAsync((long)i * size, back);
            Assert.Equal(Blocks.Pattern(size, 100 + i), back);
        }
    }

    [Fact]
    public async Task Flush_Succeeds_AndDataStaysReadable()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        await device.WriteAsync(0, Blocks.Pattern(device.SectorSizeBytes, 3));
        await device.FlushAsync();
        var back = new byte[device.SectorSizeBytes];
        await device.ReadAsync(0, back);
        Assert.Equal(Blocks.Pattern(device.SectorSizeBytes, 3), back);
    }

    [Fact]
    public async Task UnalignedOffset_IsRefused_NamingTheValue()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        var e = await Assert.ThrowsAnyAsync<ArgumentOutOfRangeException>(
            () => device.ReadAsync(1, new byte[device.SectorSizeBytes]).AsTask());
        Assert.Contains("1", e.Message);
        await Assert.ThrowsAnyAsync<ArgumentOutOfRangeException>(
            () => device.WriteAsync(device.SectorSizeBytes / 2, new byte[device.SectorSizeBytes]).AsTask());
    }

    [Fact]
    public async Task UnalignedLength_IsRefused()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        await Assert.ThrowsAnyAsync<ArgumentOutOfRangeException>(
            () => device.WriteAsync(0, new byte[device.SectorSizeBytes + 1]).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentOutOfRangeException>(() => device.ReadAsync(0, new byte[7]).AsTask());
    }

    [Fact]
    public async Task IoPastCapacity_IsRefused_AndDoesNotGrowTheDevice()
    {
        await using IBlockDevice device = await CreateDeviceAsync(ContractCapacityBytes);
        var capacity = device.CapacityBytes;
        var sector = device.SectorSizeBytes;
        await Assert.ThrowsAnyAsync<ArgumentOutOfRangeException>(
            () => device.WriteAsync(capacity - sector, new byte[2 * sector]).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentOutOfRangeException>(
            () => device.ReadAsync(capacity, new byte[sector]).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentOutOfRangeException>(
            () => device.ReadAsync(-sector, new byte[sector]).AsTask());
        Assert.Equal(capacity, device.CapacityBytes);
    }
}
