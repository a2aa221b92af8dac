using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

public sealed class RaidVolumeTests
{
    public static TheoryData<RaidLevel, int, int> Levels() => new()
    {
        { RaidLevel.Raid0, 3, 4096 }, { RaidLevel.Raid0, 2, 16384 },
        { RaidLevel.Raid1, 2, 8192 }, { RaidLevel.Raid1, 3, 4096 },
        { RaidLevel.Raid5, 3, 4096 }, { RaidLevel.Raid5, 4, 16384 }, { RaidLevel.Raid5, 5, 8192 },
        { RaidLevel.Raid6, 4, 4096 }, { RaidLevel.Raid6, 5, 16384 }, { RaidLevel.Raid6, 6, 8192 },
    };

    [Theory]
    [MemberData(nameof(Levels))]
    public async Task RandomWrites_ReadBack_AndSurviveReassembly(RaidLevel level, int members, int chunk)
    {
        var seed = HashCode.Combine(level, members, chunk) & 0xFFFF;
        var random = new Random(seed);
        (RaidVolume volume, MemoryBlockDevice[] devices) = await CreateAsync(level, members, chunk, stripes: 12);
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, random, 60);
        AssertSame(model, await ReadAllAsync(volume), $"seed {seed} {volume.Geometry}");
        await volume.DisposeAsync();

        await using RaidVolume again = await RaidVolume.AssembleAsync(devices);
        Assert.Equal(VolumeHealth.Healthy, again.Health);
        Assert.Equal("vol", again.Name);
        AssertSame(model, await ReadAllAsync(again), $"seed {seed} {volume.Geometry} after reassembly");
        ScrubReport report = await again.ScrubAsync(repair: false);
        Assert.Equal((0L, 0L), (report.ParityMismatches, report.ChecksumErrors));
    }

    [Fact]
    public async Task SmallestMember_SetsCapacity()
    {
        var devices = new IBlockDevice[]
        {
            new MemoryBlockDevice(MemberBytesFor(4096, 10)), new MemoryBlockDevice(MemberBytesFor(4096, 7) + 4096),
                new MemoryBlockDevice(MemberBytesFor(4096, 30)),
        };
        await using RaidVolume volume = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 3, 4096), devices);
        Assert.Equal(7, volume.StripeCount);
        Assert.Equal(7 * 2 * 4096, volume.CapacityBytes);
    }

    [Fact]
    public async Task MemberTooSmall_IsRefused_NamingIt()
    {
        var devices = new IBlockDevice[]
        {
            new MemoryBlockDevice(1 << 20, "tiny"),
            new MemoryBlockDevice(4 << 20, "b"),
            new MemoryBlockDevice(4 << 20, "c")
        };
        var e = await Assert.ThrowsAsync<ArgumentException>(
            () => RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 3, 4096), devices).AsTask());
        Assert.Contains("tiny", e.Message);
    }

    [Fact]
    public async Task WrongNumberOfMembers_IsRefused()
    {
        var devices = Members(3, 4096, 4);
        var e = await Assert.ThrowsAsync<ArgumentException>(
            () => RaidVolume.CreateAsync(Definition(RaidLevel.Raid6, 4, 4096), devices).AsTask());
        Assert.Contains("4", e.Message);
    }

    [Fact]
    public async Task BadIo_IsRefused_WithValueAndRange_AndChangesNothing()
    {
        (RaidVolume volume, MemoryBlockDevice[] _d) = await CreateAsync(RaidLevel.Raid5, 3, 4096, 4);
        await using var guard = volume;
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, new Random(8), 10);

        async Task Refused(Func<Task> io, string value, string paramName)
        {
            var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(io);
            Assert.Equal(paramName, e.ParamName);
            Assert.Contains(value, e.Message);
            Assert.Contains("..", e.Message);
        }
        await Refused(() => volume.WriteAsync(100, new byte[4096]).AsTask(), "100", "offsetBytes");
        await Refused(
            () => volume.WriteAsync(volume.CapacityBytes, new byte[4096]).AsTask(),
            volume.CapacityBytes.ToString(),
            "offsetBytes");
        await Refused(() => volume.WriteAsync(-4096, new byte[4096]).AsTask(), "-4096", "offsetBytes");
        await Refused(() => volume.WriteAsync(0, Array.Empty<byte>()).AsTask(), "0", "source");
        await Refused(() => volume.WriteAsync(0, new byte[4095]).AsTask(), "4095", "source");
        await Refused(
            () => volume.WriteAsync(volume.CapacityBytes - 4096, new byte[8192]).AsTask(), "8192", "lengthBytes");
        await Refused(
            () => volume.ReadAsync(0, new byte[volume.MaxIoSizeBytes + 4096]).AsTask(),
            (volume.MaxIoSizeBytes + 4096).ToString(),
            "destination");
        await Refused(() => volume.WriteAsync(0, new byte[4096], -1, false).AsTask(), "-1", "writeTimestamp");
        await Refused(() => volume.TrimAsync(0, 100).AsTask(), "100", "lengthBytes");
        AssertSame(model, await ReadAllAsync(volume), "after refused I/O");
    }

    /// <summary>
    /// 512-byte I/O over the 4 KiB blocks: concurrent sector writes to different sectors of the same blocks (each
    /// reads, patches and rewrites its block under the stripe lock) all survive, and sector reads and partial trims
    /// match a byte model.
    /// </summary>
    [Fact]
    public async Task SectorWritesReadsAndTrims_KeepTheBlocksOtherSectors_AlsoWhenConcurrent()
    {
        (RaidVolume volume, MemoryBlockDevice[] _d) = await CreateAsync(RaidLevel.Raid5, 3, 4096, 16);
        await using var guard = volume;
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, new Random(21), 10);
        const int sector = RaidVolume.SectorBytes;
        Assert.Equal(sector, volume.SectorSizeBytes);

        // Eight writers, each owning one sector of every block of the first 64 KiB, all at once.
        var writers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            for (var block = 0; block < 16; block++)
            {
                var data = new byte[sector];
                new Random(w * 100 + block).NextBytes(data);
                await volume.WriteAsync(block * 4096 + w * sector, data);
                data.CopyTo(model.AsSpan(block * 4096 + w * sector));
            }
        })).ToArray();
        await Task.WhenAll(writers);
        AssertSame(model, await ReadAllAsync(volume), "after concurrent sector writes");

        // A write and a trim that each start and end inside blocks, across several; then sector reads.
        var span = new byte[3 * 4096];
        new Random(22).NextBytes(span);
        await volume.WriteAsync(5 * sector + 8192, span);
        span.CopyTo(model.AsSpan(5 * sector + 8192));
        await volume.TrimAsync(3 * sector + 65536, 2 * 4096);
        model.AsSpan(3 * sector + 65536, 2 * 4096).Clear();
        await volume.TrimAsync(sector, sector);
        model.AsSpan(sector, sector).Clear();
        AssertSame(model, await ReadAllAsync(volume), "after a sector write and partial trims");
        var read = new byte[2 * 4096 + sector];
        await volume.ReadAsync(7 * sector + 4096, read);
        Assert.Equal(model.AsSpan(7 * sector + 4096, read.Length).ToArray(), read);
    }

    [Fact]
    public async Task Trim_ReadsBackZeroes()
    {
        (RaidVolume volume, MemoryBlockDevice[] _d) = await CreateAsync(RaidLevel.Raid6, 4, 4096, 6);
        await using var guard = volume;
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, new Random(2), 20);
        await volume.TrimAsync(4096, 5 * 4096);
        Array.Clear(model, 4096, 5 * 4096);
        AssertSame(model, await ReadAllAsync(volume), "after trim");
    }

    [Fact]
    public async Task Timestamps_AreStoredPerBlock_AndSurviveDegradedReads()
    {
        (RaidVolume volume, MemoryBlockDevice[] _d) = await CreateAsync(RaidLevel.Raid5, 4, 8192, 4);
        await using var guard = volume;
        await volume.WriteAsync(0, new byte[3 * 4096], writeTimestamp: 100, forceUnitAccess: false);
        await volume.WriteAsync(4096, new byte[4096], writeTimestamp: 200, forceUnitAccess: true);
        var ts = new long[5];
        await volume.ReadBlockTimestampsAsync(0, ts);
        Assert.Equal(new long[] { 100, 200, 100, 0, 0 }, ts);

        // Lose the member holding block 0: its timestamp comes from the row's parity, an upper bound.
        var member = volume.Layout.Locate(0).Member;
        await volume.FailMemberAsync(member, "test");
        await volume.ReadBlockTimestampsAsync(0, ts);
        Assert.True(ts[0] >= 100, $"degraded timestamp {ts[0]} below the real 100");
        Assert.Equal(200, ts[1]);
        // Unbounded, the blocks on the lost member (0 and 1: a chunk is two blocks) are unknown (0); block 2, on
        // another member, keeps its own.
        await volume.ReadBlockTimestampsAsync(0, ts, boundMissing: false);
        Assert.Equal(new long[] { 0, 0, 100 }, ts[..3]);
    }

    [Fact]
    public async Task ConcurrentWriters_OfOneStripe_AllLand()
    {
        const int seed = 31;
        (RaidVolume volume, MemoryBlockDevice[] _d) = await CreateAsync(RaidLevel.Raid6, 5, 16384, 8);
        await using var guard = volume;
        var model = new byte[volume.CapacityBytes];
        var random = new Random(seed);
        random.NextBytes(model);
        // Each block written by its own task, all at once: same stripes, different blocks.
        await Task.WhenAll(Enumerable.Range(0, (int)(volume.CapacityBytes / Block)).Select(b =>
            volume.WriteAsync((long)b * Block, model.AsMemory(b * Block, Block)).AsTask()));
        AssertSame(model, await ReadAllAsync(volume), $"seed {seed}");
        ScrubReport report = await volume.ScrubAsync(repair: false);
        Assert.Equal(0, report.ParityMismatches + report.ChecksumErrors);
    }

    [Fact]
    public async Task FileMembers_RoundTrip()
    {
        var dir = Directory.CreateTempSubdirectory("cloud-vol-").FullName;
        try
        {
            IBlockDevice[] files = Enumerable.Range(
                0,
                4).Select(i => (IBlockDevice)new FileBlockDevice(
                    Path.Combine(dir, $"d{i}.img"), MemberBytesFor(65536, 6))).ToArray();
            byte[] model;
            await using (RaidVolume volume = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 4, 65536), files))
            {
                model = new byte[volume.CapacityBytes];
                await RandomWritesAsync(volume, model, new Random(4), 30, maxBlocks: 64);
                await volume.FlushAsync();
            }
            foreach (IBlockDevice f in files) await f.DisposeAsync();
            files = Enumerable.Range(
                0, 4).Select(i => (IBlockDevice)new FileBlockDevice(Path.Combine(dir, $"d{i}.img"))).ToArray();
            await using (RaidVolume volume = await RaidVolume.AssembleAsync(files))
                AssertSame(model, await ReadAllAsync(volume), "file members");
            foreach (IBlockDevice f in files) await f.DisposeAsync();
        }
        finally { Directory.Delete(dir, true); }
    }
}
