using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Tests;

/// <summary>
/// A batch's lock lease on a slow disk (issue 14, the kill: on the loaded bed one page-blob write could outlast half a
/// lease): the batch keeps its lease alive while it writes, instead of losing it, being fenced and writing again.
/// </summary>
public sealed class BatchLeaseTests
{
    /// <summary>A short lease, so that one disk write outlasts it.</summary>
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(2);

    /// <summary>Each engine operation's latency: longer than the whole lease.</summary>
    private static readonly TimeSpan DiskLatency = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Bound on the write: a few disk operations. A batch fenced after every pass would retry until the 2 min
    /// re-delegation timeout.
    /// </summary>
    private static readonly TimeSpan WriteBound = TimeSpan.FromSeconds(40);

    [Fact]
    public async Task ADiskWriteLongerThanTheLease_CommitsInOnePass_InsteadOfBeingFencedAgainAndAgain()
    {
        await using var cloud = await CloudCluster.StartAsync(configure: o => o.LockLease = Lease);
        var v = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("lease-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        foreach (var silo in cloud.Silos) cloud.Service<SiloRuntimeSettings>(silo).InjectedDiskLatency = DiskLatency;
        var data = Blocks.Pattern(4096, 7);

        var clock = Stopwatch.StartNew();
        var write = cloud.FrontEnd(cloud.Silos[0]).WriteAsync(v.Name, 0, data, forceUnitAccess: true);
        var finished = await Task.WhenAny(write, Task.Delay(WriteBound));
        Assert.True(finished == write,
            $"a FUA write on a disk slower ({DiskLatency.TotalSeconds} s) than the lock lease ({Lease.TotalSeconds} s) did not commit within {WriteBound.TotalSeconds} s");
        await write;

        foreach (var silo in cloud.Silos) cloud.Service<SiloRuntimeSettings>(silo).InjectedDiskLatency = TimeSpan.Zero;
        Assert.Equal(data, await cloud.FrontEnd(cloud.Silos[1]).ReadAsync(v.Name, 0, 4096));
        Assert.True(clock.Elapsed < WriteBound, $"took {clock.Elapsed.TotalSeconds:F1} s");
    }
}
