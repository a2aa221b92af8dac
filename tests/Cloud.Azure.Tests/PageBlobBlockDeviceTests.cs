using Azure;
using Azure.Storage.Blobs.Models;
using Cloud.Azure.Tests.Infrastructure;
using Cloud.Storage.Azure;
using Cloud.Storage.Devices;

namespace Cloud.Azure.Tests;

[Collection(AzuriteCollection.Name)]
public sealed class PageBlobBlockDeviceTests(AzuriteFixture fixture)
{
    private const long OneMiB = 1024 * 1024;
    private const int Sector = PageBlobBlockDevice.SectorBytes;

    [Fact]
    public async Task WriteThenRead_ReturnsTheSameBytes_AndUnwrittenSectorsReadAsZeros()
    {
        await using var device = await fixture.Connect()
            .OpenDeviceAsync(fixture.NewContainerName(), "disk0", 4 * OneMiB);
        var data = Blocks.Pattern(3 * Sector, seed: 1);
        await device.WriteAsync(2 * Sector, data);

        var back = new byte[5 * Sector];
        await device.ReadAsync(Sector, back);
        Assert.All(back[..Sector], b => Assert.Equal(0, b));
        Assert.Equal(data, back[Sector..(4 * Sector)]);
        Assert.All(back[(4 * Sector)..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Open_CreatesAPageBlobOfTheRequestedSize_WithTheDevicesSectorAndLimits()
    {
        var connection = fixture.Connect(new PageBlobDeviceOptions { MaxInFlightIo = 7 });
        var container = fixture.NewContainerName();
        await using var device = await connection.OpenDeviceAsync(container, "dir/disk.vhd", 8 * OneMiB);

        BlobProperties properties = (await connection.GetPageBlobClient(container, "dir/disk.vhd").GetPropertiesAsync())
            .Value;
        Assert.Equal(BlobType.Page, properties.BlobType);
        Assert.Equal(8 * OneMiB, properties.ContentLength);
        Assert.Equal(8 * OneMiB, device.CapacityBytes);
        Assert.Equal(4096, device.SectorSizeBytes);
        Assert.Equal(7, device.MaxInFlightIo);
        Assert.EndsWith($"/{container}/dir/disk.vhd", device.Name);
    }

    [Fact]
    public async Task WritesAndReadsLargerThanOneRequest_AreSplit_AndRoundTrip()
    {
        await using var device = await fixture.Connect()
            .OpenDeviceAsync(fixture.NewContainerName(), "big", 16 * OneMiB);
        var data = Blocks.Pattern((int)(9 * OneMiB) + (3 * Sector), seed: 2);
        await device.WriteAsync(OneMiB - Sector, data);

        var back = new byte[data.Length];
        await device.ReadAsync(OneMiB - Sector, back);
        Assert.True(data.AsSpan().SequenceEqual(back));
    }

    [Fact]
    public async Task SeededConcurrentIo_MatchesAnInMemoryModel()
    {
        var seed = Environment.TickCount;
        const long capacity = 8 * OneMiB;
        await using var device = await fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "model", capacity);
        var random = new Random(seed);
        var model = new byte[capacity];
        for (var round = 0; round < 20; round++)
        {
            // Disjoint ranges per round, so concurrent writes have one right answer.
            var io = new List<Task>();
            var used = new bool[capacity / Sector];
            for (var i = 0; i < 6; i++)
            {
                var sectors = random.Next(1, 64);
                var first = random.NextInt64(0, (capacity / Sector) - sectors);
                if (used.AsSpan((int)first, sectors).Contains(true))
                {
                    continue;
                }

                used.AsSpan((int)first, sectors).Fill(true);
                var data = Blocks.Pattern(sectors * Sector, random.Next());
                data.CopyTo(model, first * Sector);
                io.Add(device.WriteAsync(first * Sector, data).AsTask());
            }

            await Task.WhenAll(io);
            var offset = random.NextInt64(0, capacity / Sector) * Sector;
            var back = new byte[(int)Math.Min(capacity - offset, random.Next(1, 600) * (long)Sector)];
            await device.ReadAsync(offset, back);
            Assert.True(
                model.AsSpan((int)offset, back.Length).SequenceEqual(back), $"round {round} differs; seed {seed}");
        }

        var all = new byte[capacity];
        await device.ReadAsync(0, all);
        Assert.True(model.AsSpan().SequenceEqual(all), $"final contents differ; seed {seed}");
    }

    [Theory]
    [InlineData(-4096L, 4096)]
    [InlineData(512L, 4096)]
    [InlineData(0L, 512)]
    [InlineData(0L, 4097)]
    [InlineData(4L * 1024 * 1024, 4096)]
    [InlineData(4L * 1024 * 1024 - 4096, 8192)]
    public async Task MisalignedOrOutOfRangeIo_IsRejected_NamingTheValue_AndChangesNothing(
        long offsetBytes,
        int lengthBytes)
    {
        await using var device = await fixture.Connect()
            .OpenDeviceAsync(fixture.NewContainerName(), "strict", 4 * OneMiB);
        var before = Blocks.Pattern((int)(4 * OneMiB), seed: 3);
        await device.WriteAsync(0, before);

        var write = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(
            () => device.WriteAsync(offsetBytes, new byte[lengthBytes]).AsTask());
        var read = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(
            () => device.ReadAsync(offsetBytes, new byte[lengthBytes]).AsTask());
        Assert.Contains("4096", write.Message);
        Assert.True(write.ActualValue is long o ? o == offsetBytes : (int)write.ActualValue! == lengthBytes);
        Assert.NotNull(read.ParamName);

        var after = new byte[before.Length];
        await device.ReadAsync(0, after);
        Assert.True(before.AsSpan().SequenceEqual(after));
    }

    [Fact]
    public async Task Reopen_WithoutCapacity_FindsTheBlobAndItsData()
    {
        var connection = fixture.Connect();
        var container = fixture.NewContainerName();
        var data = Blocks.Pattern(2 * Sector, seed: 4);
        await using (var first = await connection.OpenDeviceAsync(container, "kept", 2 * OneMiB))
        {
            await first.WriteAsync(OneMiB, data);
        }

        await using var second = await connection.OpenDeviceAsync(container, "kept");
        Assert.Equal(2 * OneMiB, second.CapacityBytes);
        var back = new byte[data.Length];
        await second.ReadAsync(OneMiB, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Open_WithCapacity_NeverOverwritesAnExistingBlob_AndRefusesAnotherSize()
    {
        var connection = fixture.Connect();
        var container = fixture.NewContainerName();
        var data = Blocks.Pattern(Sector, seed: 5);
        await using (var first = await connection.OpenDeviceAsync(container, "sized", 2 * OneMiB))
        {
            await first.WriteAsync(0, data);
        }

        var error = await Assert.ThrowsAsync<ArgumentException>(
            () => connection.OpenDeviceAsync(container, "sized", 4 * OneMiB).AsTask());
        Assert.Contains("2097152", error.Message);
        Assert.Contains("4194304", error.Message);

        await using var again = await connection.OpenDeviceAsync(container, "sized", 2 * OneMiB);
        var back = new byte[Sector];
        await again.ReadAsync(0, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Open_OfAMissingBlobWithoutCapacity_FailsWithBlockDeviceException()
    {
        var error = await Assert.ThrowsAsync<BlockDeviceException>(
            () => fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "absent").AsTask());
        Assert.Contains("does not exist", error.Message);
    }

    [Fact]
    public async Task Open_OfABlockBlob_IsRefused()
    {
        var connection = fixture.Connect();
        var container = fixture.NewContainerName();
        var containerClient = connection.GetContainerClient(container);
        await containerClient.CreateIfNotExistsAsync();
        await containerClient.GetBlobClient("notes.txt").UploadAsync(BinaryData.FromString("not a disk"));

        var error = await Assert.ThrowsAsync<ArgumentException>(
            () => connection.OpenDeviceAsync(container, "notes.txt").AsTask());
        Assert.Contains("Block", error.Message);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-4096L)]
    [InlineData(4096L + 512)]
    [InlineData(8L * 1024 * 1024 * 1024 * 1024 + 4096)]
    public async Task Open_WithABadCapacity_IsRefused_NamingIt(long capacityBytes)
    {
        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(
            () => fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "bad", capacityBytes).AsTask());
        Assert.Equal("capacityBytes", error.ParamName);
        Assert.Equal(capacityBytes, error.ActualValue);
    }

    [Fact]
    public async Task TwoSilosOnOneBlob_WriteConcurrently_SeeEachOthersData_AndTakeNoLease()
    {
        var container = fixture.NewContainerName();
        var siloA = fixture.Connect();
        var siloB = fixture.Connect();
        await using var a = await siloA.OpenDeviceAsync(container, "shared", 4 * OneMiB);
        await using var b = await siloB.OpenDeviceAsync(container, "shared", 4 * OneMiB);

        var fromA = Blocks.Pattern((int)OneMiB, seed: 6);
        var fromB = Blocks.Pattern((int)OneMiB, seed: 7);
        await Task.WhenAll(a.WriteAsync(0, fromA).AsTask(), b.WriteAsync(OneMiB, fromB).AsTask());

        var seenByA = new byte[OneMiB];
        var seenByB = new byte[OneMiB];
        await a.ReadAsync(OneMiB, seenByA);
        await b.ReadAsync(0, seenByB);
        Assert.Equal(fromB, seenByA);
        Assert.Equal(fromA, seenByB);
        var properties = (await siloA.GetPageBlobClient(container, "shared").GetPropertiesAsync()).Value;
        Assert.Equal(LeaseState.Available, properties.LeaseState);
    }

    [Fact]
    public async Task WriteIfMatch_WritesWithTheCurrentETag_AndRefusesAStaleOne_LeavingTheDataAlone()
    {
        var container = fixture.NewContainerName();
        await using var siloA = await fixture.Connect().OpenDeviceAsync(container, "sb", OneMiB);
        await using var siloB = await fixture.Connect().OpenDeviceAsync(container, "sb", OneMiB);
        var buffer = new byte[Sector];

        ETag seenByA = await siloA.ReadWithETagAsync(0, buffer);
        ETag seenByB = await siloB.ReadWithETagAsync(0, buffer);
        Assert.Equal(seenByA, seenByB);

        var superblockA = Blocks.Pattern(Sector, seed: 8);
        var superblockB = Blocks.Pattern(Sector, seed: 9);
        ConditionalWriteResult a = await siloA.WriteIfMatchAsync(0, superblockA, seenByA);
        ConditionalWriteResult b = await siloB.WriteIfMatchAsync(0, superblockB, seenByB);

        Assert.True(a.Written);
        Assert.False(b.Written);
        Assert.Equal(a.ETag, b.ETag);
        ETag now = await siloB.ReadWithETagAsync(0, buffer);
        Assert.Equal(superblockA, buffer);
        Assert.Equal(a.ETag, now);

        // B merges and retries with the ETag it now holds.
        Assert.True((await siloB.WriteIfMatchAsync(0, superblockB, now)).Written);
        await siloA.ReadAsync(0, buffer);
        Assert.Equal(superblockB, buffer);
    }

    [Fact]
    public async Task WriteIfMatch_LargerThanOnePutPage_IsRejected()
    {
        await using var device = await fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "sb", 8 * OneMiB);
        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(
            () => device.WriteIfMatchAsync(
                0, new byte[PageBlobBlockDevice.MaxPutPageBytes + Sector], ETag.All).AsTask());
        Assert.Contains("4194304", error.Message);
    }

    [Fact]
    public async Task Flush_ReturnsOnlyAfterEveryWriteIssuedBeforeIt_HasCompleted()
    {
        await using var device = await fixture.Connect()
            .OpenDeviceAsync(fixture.NewContainerName(), "flush", 16 * OneMiB);
        var writes = new List<Task>();
        for (var i = 0; i < 12; i++)
        {
            writes.Add(device.WriteAsync(i * OneMiB, Blocks.Pattern((int)OneMiB, i)).AsTask());
        }

        await device.FlushAsync();

        Assert.All(writes, w => Assert.True(w.IsCompletedSuccessfully));
    }

    [Fact]
    public async Task Io_AfterDispose_ThrowsObjectDisposedException()
    {
        var device = await fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "gone", OneMiB);
        await device.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => device.ReadAsync(0, new byte[Sector]).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => device.WriteAsync(0, new byte[Sector]).AsTask());
    }

    [Fact]
    public async Task CallersCancellation_StaysAnOperationCanceledException()
    {
        await using var device = await fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "cancel", OneMiB);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => device.WriteAsync(0, new byte[Sector], cancelled.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => device.ReadAsync(0, new byte[Sector], cancelled.Token).AsTask());
    }
}
