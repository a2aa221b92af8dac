using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Cloud.Storage.Volumes;
using Cloud.Testing;
using Orleans.Core.Internal;

namespace Cloud.Grains.Tests;

/// <summary>
/// A pending version whose write no silo will ever finish (an orphan) must not hold reads of its stripes until the
/// re-delegation timeout. CI saw one in the crash tests: a first server took a timestamp, its move of the partition's
/// delegation unit was refused by placement (the volume's host had no live silo for a moment after a kill), and the
/// write failed without settling the version; a read of those stripes then waited past Orleans' 30 s response timeout.
/// </summary>
public sealed class OrphanVersionTests
{
    /// <summary>
    /// Far above the orphan check (<see cref="PartitionLockGrain.OrphanCheckAfter"/> and one ask), far below the
    /// re-delegation timeout these tests set, so a read freed by that timeout cannot pass for one freed by the check.
    /// </summary>
    private static readonly TimeSpan FreedBound = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan LongRedelegation = TimeSpan.FromMinutes(10);

    private static LockRequest Read(string address) =>
        new(3, 3, LockMode.Shared, address, TimeSpan.FromSeconds(10), WaitForPendingWrites: true);

    [Fact]
    public async Task AVersionItsSiloNoLongerHas_StopsHoldingReads_AndOneItStillHasKeepsHoldingThem()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 1, configure: o => o.RedelegationTimeout = LongRedelegation);
        var silo = cloud.Silos[0];
        var address = silo.SiloAddress.ToParsableString();
        var locks = cloud.Service<HeldLocks>(silo);
        var inFlight = cloud.Service<VersionsInFlight>(silo);

        // Still the silo's: a read waits for it past several orphan checks, and gets the stripe once it settles.
        var kept = cloud.Grains(silo).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");
        var owned = await kept.NextTimestampAsync(3, 3, address);
        inFlight.Begin(kept.GetPrimaryKeyString(), owned.Timestamp);
        var waiting = locks.AcquireAsync(kept, Read(address));
        await Task.Delay(PartitionLockGrain.OrphanCheckAfter * 3);
        Assert.False(waiting.IsCompleted, "a read stopped waiting for a version its silo still had");
        await kept.SettleAsync([owned.Timestamp]);
        inFlight.End(kept.GetPrimaryKeyString(), owned.Timestamp);
        await locks.ReleaseAsync(kept, (await waiting.WaitAsync(FreedBound)).FencingToken);

        // An orphan: the grain handed the version to this silo, which never learned of it (a grant whose answer was
        // lost). The read gets the stripe once the silo says it has no such version.
        var lockGrain = cloud.Grains(silo).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");
        await lockGrain.NextTimestampAsync(3, 3, address);
        var grant = await locks.AcquireAsync(lockGrain, Read(address)).WaitAsync(FreedBound);
        await locks.ReleaseAsync(lockGrain, grant.FencingToken);
        Assert.Equal(0, (await lockGrain.GetControlAsync()).PendingWrites);
        Assert.Equal(0, inFlight.Count);
    }

    [Fact]
    public async Task AWriteWhosePartitionCannotBeMoved_FailsAndSettlesItsVersion()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 2, configure: o => o.RedelegationTimeout = LongRedelegation);
        var v = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("orphan-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid1, 2, 64 << 10, false));
        var first = cloud.Silos[0];
        await cloud.FrontEnd(first).WriteAsync(v.Name, 0, Blocks.Pattern(4096, 1), forceUnitAccess: true);
        var lockGrain = cloud.Grains(first).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        Assert.NotNull((await lockGrain.GetControlAsync()).ActiveTarget);

        // Every silo drains: the partition's target is no longer appropriate and placement has nowhere to move it.
        foreach (var s in cloud.Silos) cloud.Service<SiloRuntimeSettings>(s).Draining = true;
        var table = cloud.Service<LoadTable>(first);
        await Eventually.TrueAsync(
            () => cloud.Silos.All(s => table.Find(s.Name)?.Draining == true), "draining is published");
        // The unit's activation is gone too (its silo died, in CI): moving it asks placement for a silo. A write may
        // still see a load table from before the drain and go to the old target: then try again.
        var unit = cloud.Grains(first).GetGrain<IDelegationGrain>(VolumeMath.PartitionKey(v, 0));
        CloudStorageException? refused = null;
        for (var attempt = 0; refused is null && attempt < 40; attempt++)
        {
            await unit.AsReference<IGrainManagementExtension>().DeactivateOnIdle();
            try
            {
                await cloud.FrontEnd(first).WriteAsync(v.Name, 0, Blocks.Pattern(4096, 2), forceUnitAccess: true);
                await Task.Delay(250);
            }
            catch (CloudStorageException e)
            {
                refused = e;
            }
        }
        Assert.NotNull(refused);
        Assert.Contains("no live silo", refused.Message, StringComparison.Ordinal);

        // Settled as it failed, not left for a read to wait on.
        Assert.Equal(0, (await lockGrain.GetControlAsync()).PendingWrites);
        Assert.Equal(0, cloud.Service<VersionsInFlight>(first).Count);
    }
}
