using Cloud.Grains.Disks;
using Cloud.Storage.Devices;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// The device contract over the disk service: a member file of the second silo's pool, opened by the first silo as a
/// <see cref="RemoteBlockDevice"/> whose every I/O is a grain call to the second silo's <see cref="IHostDiskGrain"/>
/// (here) or a request on the first silo's disk stream to the second (<see cref="StreamBlockDeviceContractTests"/>).
/// </summary>
public class RemoteBlockDeviceContractTests(PooledHosts hosts)
    : BlockDeviceContractTests, IClassFixture<PooledHosts>
{
    /// <summary>The caller's disk stream client, or null for grain calls.</summary>
    protected virtual DiskStreamClient? Stream => null;

    protected CloudCluster Cluster => hosts.Cluster;

    protected PooledHosts Hosts => hosts;

    private string Caller => Cluster.Silos[0].Name;

    private string Server => Cluster.Silos[1].Name;

    protected string NewMemberPath() => Path.Combine(hosts.PoolOf(Server), "contract", Guid.NewGuid().ToString("N") + ".img");

    protected async ValueTask<RemoteBlockDevice> OpenAsync(string path, long? sizeBytes, SiloAddress writer) =>
        await HostDisks.OpenThroughAsync(
            Cluster.Grains(Cluster.Silos[0]), Server, path, sizeBytes, writer.ToParsableString(), Stream)
        ?? throw new InvalidOperationException($"{path} was not created");

    protected override async ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes) =>
        await OpenAsync(NewMemberPath(), capacityBytes, Cluster.Silos[0].SiloAddress);

    [Fact]
    public async Task GatheredWrite_ThenScatteredRead_MoveEachPieceInTurn()
    {
        await using var device = (IVectoredBlockDevice)await CreateDeviceAsync(ContractCapacityBytes);
        var sector = device.SectorSizeBytes;
        var pieces = new[] { Blocks.Pattern(8 * sector, 1), Blocks.Pattern(sector, 2), Blocks.Pattern(3 * sector, 3) };
        await device.WriteGatherAsync(4 * sector, [.. pieces.Select(p => (ReadOnlyMemory<byte>)p)]);

        var whole = new byte[12 * sector];
        await device.ReadAsync(4 * sector, whole);
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), whole);
        var back = pieces.Select(p => new byte[p.Length]).ToArray();
        await device.ReadScatterAsync(4 * sector, [.. back.Select(b => (Memory<byte>)b)]);
        for (var i = 0; i < pieces.Length; i++) Assert.Equal(pieces[i], back[i]);
    }

    [Fact]
    public async Task SplitWrite_ThenSplitRead_MoveBothRanges_AndLeaveTheGapAlone()
    {
        // A chunk's rows and its metadata sector, with rows between them the request leaves out: one request each way
        // on the disk stream, two with grain calls, the same bytes either way.
        var path = NewMemberPath();
        await using var device = await OpenAsync(path, ContractCapacityBytes, Cluster.Silos[0].SiloAddress);
        var server = Cluster.Service<DiskServer>(Cluster.Silos[1]);
        var sector = device.SectorSizeBytes;
        var gap = Blocks.Pattern(6 * sector, 7);
        await device.WriteAsync(4 * sector, gap);
        var first = Blocks.Pattern(2 * sector, 1);
        var second = Blocks.Pattern(sector, 2);
        var flushesBefore = server.FlushesOf(path);
        await device.WriteSplitAsync(2 * sector, first, 10 * sector, second);
        // A write, not a flush: durability stays the caller's flush's business.
        Assert.Equal(flushesBefore, server.FlushesOf(path));

        var onHost = new byte[12 * sector];
        await using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            await file.ReadExactlyAsync(onHost);
        Assert.Equal(first, onHost[(2 * sector)..(4 * sector)]);
        Assert.Equal(gap, onHost[(4 * sector)..(10 * sector)]);
        Assert.Equal(second, onHost[(10 * sector)..(11 * sector)]);
        var backFirst = new byte[2 * sector];
        var backSecond = new byte[sector];
        await device.ReadSplitAsync(2 * sector, backFirst, 10 * sector, backSecond);
        Assert.Equal(first, backFirst);
        Assert.Equal(second, backSecond);
    }

    [Fact]
    public async Task SplitRequest_WithARangePastTheEnd_IsRefusedBeforeAnythingIsWritten()
    {
        var path = NewMemberPath();
        await using var device = await OpenAsync(path, ContractCapacityBytes, Cluster.Silos[0].SiloAddress);
        var sector = device.SectorSizeBytes;
        var error = await Assert.ThrowsAnyAsync<ArgumentException>(() => device.WriteSplitAsync(
            0, Blocks.Pattern(sector, 1), ContractCapacityBytes, Blocks.Pattern(sector, 2)).AsTask());
        Assert.Contains("second", error.Message, StringComparison.Ordinal);
        var onHost = new byte[sector];
        await using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            await file.ReadExactlyAsync(onHost);
        Assert.Equal(new byte[sector], onHost);
    }

    [Fact]
    public async Task Member_IsTheServingHostsFile_SeenByItsHostAfterAFlush()
    {
        var path = NewMemberPath();
        await using var device = await OpenAsync(path, ContractCapacityBytes, Cluster.Silos[0].SiloAddress);
        await device.WriteAsync(device.SectorSizeBytes, Blocks.Pattern(device.SectorSizeBytes, 9));
        await device.FlushAsync();

        var onHost = new byte[device.SectorSizeBytes];
        await using (var file = File.OpenRead(path))
        {
            file.Position = device.SectorSizeBytes;
            await file.ReadExactlyAsync(onHost);
        }
        Assert.Equal(Blocks.Pattern(device.SectorSizeBytes, 9), onHost);
        Assert.Equal(ContractCapacityBytes, new FileInfo(path).Length);
    }

    [Fact]
    public async Task Write_FromAnOlderGenerationOfALiveSilo_IsRefusedAsFenced_AndLeavesTheDiskUnchanged()
    {
        var path = NewMemberPath();
        var live = Cluster.Silos[0].SiloAddress;
        // The same endpoint one incarnation earlier: a silo that restarted since, whose old process writes late.
        var stale = SiloAddress.New(live.Endpoint, live.Generation - 1);
        await using var good = await OpenAsync(path, ContractCapacityBytes, live);
        await good.WriteAsync(0, Blocks.Pattern(good.SectorSizeBytes, 4));
        await using var late = await OpenAsync(path, null, stale);

        var error = await Assert.ThrowsAsync<BlockDeviceException>(
            () => late.WriteAsync(0, new byte[late.SectorSizeBytes]).AsTask());
        Assert.Contains("fenced", error.Message, StringComparison.Ordinal);
        Assert.Contains(Server, error.DeviceName, StringComparison.Ordinal);
        var back = new byte[good.SectorSizeBytes];
        await late.ReadAsync(0, back);
        Assert.Equal(Blocks.Pattern(good.SectorSizeBytes, 4), back);
    }

    [Fact]
    public async Task PooledWrite_WhosePayloadIsNotTheLengthSent_IsRefused_AndLeavesTheDiskUnchanged()
    {
        var path = NewMemberPath();
        await using var device = await OpenAsync(path, ContractCapacityBytes, Cluster.Silos[0].SiloAddress);
        await device.WriteAsync(0, Blocks.Pattern(2 * device.SectorSizeBytes, 5));
        var payload = new Orleans.Serialization.Buffers.PooledBuffer();
        payload.Write(new byte[device.SectorSizeBytes]);

        var error = await Assert.ThrowsAsync<Cloud.Grains.Abstractions.CloudStorageException>(
            () => Cluster.Grains(Cluster.Silos[0]).GetGrain<IHostDiskGrain>(Server).WritePooledAsync(
                path, 0, 2 * device.SectorSizeBytes, payload, Cluster.Silos[0].SiloAddress.ToParsableString()));
        Assert.Contains($"a {2 * device.SectorSizeBytes}-byte write at 0 arrived with {device.SectorSizeBytes} bytes", error.Message, StringComparison.Ordinal);
        var back = new byte[2 * device.SectorSizeBytes];
        await device.ReadAsync(0, back);
        Assert.Equal(Blocks.Pattern(2 * device.SectorSizeBytes, 5), back);
    }

    [Fact]
    public async Task Open_OfAFileOutsideThePools_IsRefusedNamingWhatIsServed()
    {
        var outside = Path.Combine(Path.GetTempPath(), "not-a-pool-" + Guid.NewGuid().ToString("N") + ".img");
        var error = await Assert.ThrowsAnyAsync<Exception>(
            () => OpenAsync(outside, ContractCapacityBytes, Cluster.Silos[0].SiloAddress).AsTask());
        Assert.Contains("does not serve", error.Message, StringComparison.Ordinal);
        Assert.Contains(hosts.PoolOf(Server), error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(outside));
    }

    [Fact]
    public async Task Open_OfAnAbsentMemberWithoutASize_ReturnsNothing()
    {
        var device = await HostDisks.OpenThroughAsync(
            Cluster.Grains(Cluster.Silos[0]), Server, NewMemberPath(), null, Caller);
        Assert.Null(device);
    }

    [Fact]
    public async Task Failure_OnTheServingHost_IsABlockDeviceExceptionOnTheCaller()
    {
        var path = NewMemberPath();
        await using var device = await OpenAsync(path, ContractCapacityBytes, Cluster.Silos[0].SiloAddress);
        // The member is deleted on its host behind the caller's back: the host's error must reach the volume as a
        // device failure, so that the volume fails the member instead of the request.
        await Cluster.Grains(Cluster.Silos[0]).GetGrain<IHostDiskGrain>(Server).DeleteAsync(path);
        var error = await Assert.ThrowsAsync<BlockDeviceException>(
            () => device.ReadAsync(0, new byte[device.SectorSizeBytes]).AsTask());
        Assert.Contains("does not exist", error.Message, StringComparison.Ordinal);
    }
}

/// <summary>
/// The same contract over the disk stream: a connection from the first silo to the second, read on a thread of its
/// own at each end (docs/CLUSTER.md, "Disks across hosts").
/// </summary>
public sealed class StreamBlockDeviceContractTests(PooledHosts hosts) : RemoteBlockDeviceContractTests(hosts)
{
    protected override DiskStreamClient Stream => Cluster.Service<DiskStreamClient>(Cluster.Silos[0]);

    [Fact]
    public async Task ManyRequestsAtOnce_EachGetsItsOwnReply()
    {
        // Replies come back in any order on one connection; each must reach its own request's buffer.
        await using var device = (IVectoredBlockDevice)await CreateDeviceAsync(ContractCapacityBytes);
        var sector = device.SectorSizeBytes;
        await Task.WhenAll(Enumerable.Range(0, 64).Select(
            i => device.WriteAsync(i * 2L * sector, Blocks.Pattern(2 * sector, i + 1)).AsTask()));
        var reads = Enumerable.Range(0, 64).Select(async i =>
        {
            var back = new byte[2 * sector];
            await device.ReadAsync(i * 2L * sector, back);
            return (i, back);
        });
        foreach (var (i, back) in await Task.WhenAll(reads))
            Assert.True(back.AsSpan().SequenceEqual(Blocks.Pattern(2 * sector, i + 1)), $"request {i} read another's data");
    }

    [Fact]
    public async Task DurableWritesArrivingTogether_ShareFlushes_AndEachLands()
    {
        // The serving connection commits the durable writes it has read as a group: one fdatasync for those that
        // arrived together, each answered only after it.
        var path = NewMemberPath();
        await using var device = await OpenAsync(path, ContractCapacityBytes, Cluster.Silos[0].SiloAddress);
        var server = Cluster.Service<DiskServer>(Cluster.Silos[1]);
        var sector = device.SectorSizeBytes;
        var before = server.FlushesOf(path);
        const int writes = 64;
        await Task.WhenAll(Enumerable.Range(0, writes).Select(i => device.WriteGatherDurableAsync(
            i * (long)sector, [Blocks.Pattern(sector, i + 1)]).AsTask()));
        var flushes = server.FlushesOf(path) - before;
        Assert.InRange(flushes, 1, writes - 1);
        var back = new byte[writes * sector];
        await using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            await file.ReadExactlyAsync(back);
        for (var i = 0; i < writes; i++)
            Assert.True(back.AsSpan(i * sector, sector).SequenceEqual(Blocks.Pattern(sector, i + 1)), $"write {i} is not on the host's file");
    }

    [Fact]
    public async Task FlushesArrivingTogether_ShareFdatasyncs_AndEachIsAnsweredAfterTheWritesBeforeIt()
    {
        // A plain flush goes to the connection's flusher thread, which flushes while the connection reads on: the
        // flushes that arrive during one fdatasync share the next.
        var path = NewMemberPath();
        await using var device = await OpenAsync(path, ContractCapacityBytes, Cluster.Silos[0].SiloAddress);
        var server = Cluster.Service<DiskServer>(Cluster.Silos[1]);
        var sector = device.SectorSizeBytes;
        const int writers = 32;
        var before = server.FlushesOf(path);
        await Task.WhenAll(Enumerable.Range(0, writers).Select(async i =>
        {
            await device.WriteAsync(i * (long)sector, Blocks.Pattern(sector, i + 1));
            await device.FlushAsync();
        }));
        var flushes = server.FlushesOf(path) - before;
        Assert.InRange(flushes, 1, writers - 1);
        var back = new byte[writers * sector];
        await using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            await file.ReadExactlyAsync(back);
        for (var i = 0; i < writers; i++)
            Assert.True(back.AsSpan(i * sector, sector).SequenceEqual(Blocks.Pattern(sector, i + 1)), $"write {i} is not on the host's file");
    }

    [Fact]
    public async Task Hello_WithoutTheServingSilosKey_IsRefused()
    {
        var path = Path.Combine(Hosts.PoolOf(Cluster.Silos[1].Name), "contract", Guid.NewGuid().ToString("N") + ".img");
        var disk = await Cluster.Grains(Cluster.Silos[0]).GetGrain<IHostDiskGrain>(Cluster.Silos[1].Name)
            .OpenAsync(path, ContractCapacityBytes);
        Assert.NotNull(disk);
        Assert.NotEmpty(disk.StreamEndpoint);
        var wrongKey = disk.StreamKey.ToArray();
        wrongKey[0] ^= 1;
        using var client = new DiskStreamClient(TimeSpan.FromSeconds(30));
        var error = await Assert.ThrowsAsync<DiskStreamBrokenException>(
            () => client.GetAsync(disk.StreamEndpoint, wrongKey, Cluster.Silos[0].SiloAddress.ToParsableString()));
        Assert.Contains("key is not this silo's", error.Message, StringComparison.Ordinal);
        // With the key it gets in.
        var connection = await client.GetAsync(
            disk.StreamEndpoint, disk.StreamKey, Cluster.Silos[0].SiloAddress.ToParsableString());
        Assert.False(connection.IsBroken);
    }
}

/// <summary>A write from a silo the membership has declared dead never reaches the disk.</summary>
public sealed class DeadWriterFencingTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Write_FromASiloDeclaredDead_IsRefusedAsFenced(bool stream)
    {
        var pool = Path.Combine(Path.GetTempPath(), "cloud-pool-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(pool);
        try
        {
            await using var cluster = await CloudCluster.StartAsync(3, o => o.DiskPools = [pool]);
            var server = cluster.Silos[0];
            var dead = cluster.Silos[2];
            var path = Path.Combine(pool, "fenced.img");
            var client = stream ? cluster.Service<DiskStreamClient>(cluster.Silos[1]) : null;
            await using var alive = await HostDisks.OpenThroughAsync(
                cluster.Grains(cluster.Silos[1]), server.Name, path, 1 << 20, cluster.Silos[1].SiloAddress.ToParsableString(), client);
            await using var zombie = await HostDisks.OpenThroughAsync(
                cluster.Grains(cluster.Silos[1]), server.Name, path, null, dead.SiloAddress.ToParsableString(), client);
            Assert.NotNull(alive);
            Assert.NotNull(zombie);
            await zombie.WriteAsync(0, Blocks.Pattern(512, 1));

            await cluster.Cluster.StopSiloAsync(dead);
            var membership = cluster.Service<IClusterMembershipService>(server);
            await Eventually.TrueAsync(
                () => membership.CurrentSnapshot.GetSiloStatus(dead.SiloAddress) == SiloStatus.Dead,
                "the serving silo sees the stopped silo as dead");

            var error = await Assert.ThrowsAsync<BlockDeviceException>(
                () => zombie.WriteAsync(0, new byte[512]).AsTask());
            Assert.Contains("declared dead", error.Message, StringComparison.Ordinal);
            // A split write (rows and metadata sector in one request) is fenced the same way, neither range written.
            error = await Assert.ThrowsAsync<BlockDeviceException>(
                () => zombie.WriteSplitAsync(0, new byte[512], 2048, new byte[512]).AsTask());
            Assert.Contains("declared dead", error.Message, StringComparison.Ordinal);
            await alive.WriteAsync(512, Blocks.Pattern(512, 2));
            var back = new byte[2560];
            await alive.ReadAsync(0, back);
            Assert.Equal(Blocks.Pattern(512, 1), back[..512]);
            Assert.Equal(Blocks.Pattern(512, 2), back[512..1024]);
            Assert.Equal(new byte[512], back[2048..]);
        }
        finally
        {
            Directory.Delete(pool, recursive: true);
        }
    }
}
