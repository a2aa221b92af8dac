using Cloud.Grains.Locks;
using Orleans.Core.Internal;

namespace Cloud.Grains.Tests;

/// <summary>
/// A partition-lock grain deactivated while a silo waits on it for a lock: what Orleans does to every activation on
/// the survivors whose grain-directory entry a dead silo kept. A deactivation first waits for the requests the
/// activation is running, and every call that arrives meanwhile is queued behind it.
/// </summary>
public sealed class LockDeactivationTests
{
    /// <summary>
    /// Bound on a call queued behind the deactivation: one lock-wait slice, the deactivation and the next activation's
    /// reclaim take about a second; the holder's lease (2 min) is what an unsliced wait would hold the queue for.
    /// </summary>
    private static readonly TimeSpan QueuedCallBound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task LockGrainDeactivatedWhileASiloWaitsForALock_ServesTheCallsQueuedBehindIt_AndTheWaitGoesOnAtTheNextActivation()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var silo = cloud.Silos[0];
        var locks = cloud.Service<HeldLocks>(silo);
        var lockGrain = cloud.Grains(silo).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");
        var address = silo.SiloAddress.ToParsableString();
        var request = new LockRequest(0, 0, LockMode.Exclusive, address, TimeSpan.FromMinutes(2), false);
        var held = await locks.AcquireAsync(lockGrain, request);
        var waiting = locks.AcquireAsync(lockGrain, request);
        await Eventually.TrueAsync(
            async () => (await lockGrain.GetControlAsync()).Waiters == 1, "the second request waiting for the lock");

        await lockGrain.AsReference<IGrainManagementExtension>().DeactivateOnIdle();
        var next = await lockGrain.NextTimestampAsync(0, 0, address).WaitAsync(QueuedCallBound);

        // The next activation reclaimed the silo's grant: the waiter still waits for it, and gets the lock on release.
        Assert.True(next.Timestamp > held.FencingToken);
        Assert.False(waiting.IsCompleted, "the waiter was granted a stripe whose holder had not released it");
        await locks.ReleaseAsync(lockGrain, held.FencingToken);
        var granted = await waiting.WaitAsync(QueuedCallBound);
        Assert.True(granted.FencingToken > next.Timestamp);
        await locks.ReleaseAsync(lockGrain, granted.FencingToken);
    }
}
