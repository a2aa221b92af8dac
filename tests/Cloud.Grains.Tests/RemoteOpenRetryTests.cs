using Cloud.Grains.Abstractions;
using Cloud.Grains.Disks;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// Opening a member of a live host whose call fails on the way (on the bed, the directory partition that locates the
/// host's disk service lived on a host just killed) is tried again while that host still publishes its load; taken as
/// missing at once, a RAID-6 with two hosts really gone saw five of six members missing and refused every write.
/// </summary>
public sealed class RemoteOpenRetryTests
{
    /// <summary>Armed by the test: how many more disk-service opens fail as if their silo were unreachable.</summary>
    private static int s_failuresLeft;

    [Fact]
    public async Task OpenOfALiveHostsMember_ThatFailsOnTheWay_IsRetried_NotTakenAsMissing()
    {
        await using var hosts = await PooledHosts.StartAsync(silo => silo.AddIncomingGrainCallFilter(async context =>
        {
            if (context.Grain is IHostDiskGrain && context.InterfaceMethod.Name == nameof(IHostDiskGrain.OpenAsync)
                && Interlocked.Decrement(ref s_failuresLeft) >= 0)
                throw new SiloUnavailableException("injected: the directory partition's silo is unreachable");
            await context.Invoke();
        }));
        var cloud = hosts.Cluster;
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("retry-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));

        var caller = cloud.Silos[0];
        var remote = Enumerable.Range(0, info.DiskCount)
            .First(i => info.MemberHost(i) != PooledHosts.HostOf(caller.Name));
        Volatile.Write(ref s_failuresLeft, 3);
        await using var device = await cloud.Service<HostDisks>(caller)
            .OpenRemoteAsync(info, remote, CancellationToken.None);
        Assert.True(Volatile.Read(ref s_failuresLeft) < 0, "the injected failures were not met");
        Assert.NotNull(device);
    }
}
