using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.FirstServers;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>Tests that kill a silo, each on its own cluster.</summary>
public sealed class FailoverTests
{
    [Fact]
    public async Task TargetKilledBeforeItsDiskWrite_FirstServerRedelegates_AndTheAcknowledgedWriteSurvives()
    {
        await using var cloud = await CloudCluster.StartAsync();
        var v = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("failover", 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var first = cloud.Silos[0];
        var target = cloud.Silos[1];
        var other = cloud.Silos[2];
        var fe = cloud.FrontEnd(first);
        var lockGrain = cloud.Grains(first).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));

        // Make the unit's target a silo other than the first server, by draining the rest for one write.
        foreach (var s in new[] { first, other }) cloud.Service<SiloRuntimeSettings>(s).Draining = true;
        var table = cloud.Service<LoadTable>(first);
        await Eventually.TrueAsync(
            () => table.Find(first.Name)?.Draining == true && table.Find(other.Name)?.Draining == true,
            "draining published");
        await fe.WriteAsync(v.Name, 0, Blocks.Pattern(4096, 1), forceUnitAccess: true);
        Assert.Equal(target.Name, (await lockGrain.GetControlAsync()).ActiveTarget);
        foreach (var s in new[] { first, other }) cloud.Service<SiloRuntimeSettings>(s).Draining = false;
        await Eventually.TrueAsync(
            () => table.Find(first.Name)?.Draining == false && table.Find(other.Name)?.Draining == false,
            "undraining published");

        // The target is slow: the acknowledged write is still only in memory, on the target and the first server.
        cloud.Service<SiloRuntimeSettings>(target).InjectedDiskLatency = TimeSpan.FromSeconds(10);
        var data = Blocks.Pattern(64 << 10, 2);
        await fe.WriteAsync(v.Name, 64 << 10, data, forceUnitAccess: false);
        Assert.True(cloud.Service<FirstServerWrites>(first).HeldCopies >= 1);

        await cloud.Cluster.KillSiloAsync(target);

        await fe.FlushAsync(v.Name);
        Assert.Equal(data, await cloud.FrontEnd(first).ReadAsync(v.Name, 64 << 10, data.Length));
        Assert.Equal(data, await cloud.FrontEnd(other).ReadAsync(v.Name, 64 << 10, data.Length));
        Assert.NotEqual(target.Name, (await lockGrain.GetControlAsync()).ActiveTarget);
    }

    [Fact]
    public async Task LocksOfAKilledSilo_AreReleased_AndItsTokenIsFenced()
    {
        await using var cloud = await CloudCluster.StartAsync();
        var doomed = cloud.Silos[2];
        var survivor = cloud.Silos[0];
        var lockGrain = cloud.Grains(survivor).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");
        // A long lease, so only the holder silo's death can end it within the test.
        var held = await lockGrain.AcquireAsync(
            new LockRequest(
                0,
                3,
                LockMode.Exclusive,
                doomed.SiloAddress.ToParsableString(),
                TimeSpan.FromMinutes(10),
                false));
        var waiting = lockGrain.AcquireAsync(
            new LockRequest(
                2,
                2,
                LockMode.Exclusive,
                survivor.SiloAddress.ToParsableString(),
                TimeSpan.FromSeconds(30),
                false));
        Assert.False(waiting.IsCompleted);

        await cloud.Cluster.KillSiloAsync(doomed);

        LockGrant granted;
        try
        {
            granted = await waiting.WaitAsync(Eventually.Bound);
        }
        catch (SiloUnavailableException)
        {
            // The lock grain itself lived on the killed silo: like a RAID worker, ask again; it is reactivated
            // elsewhere.
            granted = await SiloFailures.RetryAsync(
                () => lockGrain.AcquireAsync(
                    new LockRequest(
                        2,
                        2,
                        LockMode.Exclusive,
                        survivor.SiloAddress.ToParsableString(),
                        TimeSpan.FromSeconds(30),
                        false)),
                Eventually.Bound);
        }
        Assert.True(granted.FencingToken > held.FencingToken);
        // The dead holder's late write is fenced: validation before the disk write and the commit both refuse it.
        await Assert.ThrowsAsync<LockFencedException>(() => lockGrain.ValidateAsync(held.FencingToken, 0, 1, [1]));
        await Assert.ThrowsAsync<LockFencedException>(
            () => lockGrain.CommitAsync(
                held.FencingToken, [new BlockCommit(0, 1, long.MaxValue)], [], "late", release: true));
        await lockGrain.ReleaseAsync(granted.FencingToken);
    }

    [Fact]
    public async Task LockLease_EndsByTime_WhenTheHolderNeverReleases()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 1, configure: o => o.LockLease = TimeSpan.FromMilliseconds(500));
        var silo = cloud.Silos[0];
        var lockGrain = cloud.Grains(silo).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");
        var holder = silo.SiloAddress.ToParsableString();
        var held = await lockGrain.AcquireAsync(
            new LockRequest(0, 0, LockMode.Exclusive, holder, TimeSpan.FromMilliseconds(300), false));
        var next = await lockGrain.AcquireAsync(
            new LockRequest(0, 0, LockMode.Exclusive, holder, TimeSpan.FromSeconds(30), false))
            .WaitAsync(Eventually.Bound);
        Assert.True(next.FencingToken > held.FencingToken);
        await Assert.ThrowsAsync<LockFencedException>(
            () => lockGrain.RenewAsync(held.FencingToken, TimeSpan.FromSeconds(1)));
    }
}
