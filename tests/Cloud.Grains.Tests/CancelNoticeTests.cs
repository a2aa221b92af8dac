using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

/// <summary>
/// The first server's cancel notice (the patent's "notify other servers to cancel any scheduled write"; issue 13,
/// item 5), driven only through the first server: when a unit's newer write goes to a new target while the previous
/// target still holds an older copy in its schedule, the first server tells the previous target to drop that copy.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class CancelNoticeTests(SharedClusterFixture fixture)
{
    /// <summary>Bound on the notice taking effect; without a notice the older copy stays scheduled for good.</summary>
    private static readonly TimeSpan NoticeTimeout = TimeSpan.FromSeconds(20);

    private CloudCluster Cloud => fixture.Cloud;

    /// <summary>Sends every delegated write of every silo to <paramref name="silo"/> (null: back to placement by load).</summary>
    private void DelegateEverythingTo(string? silo)
    {
        foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = silo;
    }

    [Fact]
    public async Task NewerWriteToANewTarget_MakesTheFirstServerCancelTheOlderScheduledCopyAtThePreviousTarget()
    {
        var v = await Cloud.Client.CreateVolumeAsync(new VolumeSpec("notice-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var (firstServer, newTarget, previousTarget) = (Cloud.Silos[0], Cloud.Silos[1], Cloud.Silos[2]);
        var frontEnd = Cloud.FrontEnd(firstServer);
        var lockGrain = Cloud.Grains(firstServer).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var previousQueue = Cloud.Service<WriteScheduler>(previousTarget);
        LockGrant? gate = null;
        try
        {
            // The test holds stripe 0 exclusively, so that no copy of it reaches disk until the test lets it: the
            // previous target's first copy waits for the lock, and its second waits in the schedule behind the first.
            gate = await lockGrain.AcquireAsync(new LockRequest(0, 0, LockMode.Exclusive, firstServer.SiloAddress.ToParsableString(), TimeSpan.FromMinutes(2), false));
            DelegateEverythingTo(previousTarget.Name);
            var busy = Blocks.Pattern(4096, 40);
            await frontEnd.WriteAsync(v.Name, 0, busy, forceUnitAccess: false);
            await frontEnd.WriteAsync(v.Name, 8192, Blocks.Pattern(8192, 41), forceUnitAccess: false);
            var before = await Eventually.ValueAsync(lockGrain.GetControlAsync, c => c.Waiters == 1, NoticeTimeout, TimeSpan.FromMilliseconds(10),
                c => $"the previous target's first batch never asked for the lock ({c.Waiters} waiters)");
            Assert.Equal(2, before.PendingWrites);
            Assert.Equal(previousTarget.Name, before.ActiveTarget);
            Assert.Equal(2, previousQueue.QueueDepth);

            // A newer version of the scheduled copy's blocks, through the same first server, to a new target.
            DelegateEverythingTo(newTarget.Name);
            var newer = Blocks.Pattern(8192, 42);
            await frontEnd.WriteAsync(v.Name, 8192, newer, forceUnitAccess: false);

            // The notice drops the older copy from the previous target's schedule and settles its timestamp at the
            // lock grain, while the test still holds the stripe: nothing else can end that copy meanwhile, since no
            // batch of stripe 0 can run.
            var (after, _) = await Eventually.ValueAsync(async () => (await lockGrain.GetControlAsync(), previousQueue.QueueDepth),
                s => s.Item1.PendingWrites == 2 && s.Item2 == 1, NoticeTimeout, TimeSpan.FromMilliseconds(10),
                s => $"the older scheduled copy was not cancelled: {s.Item1.PendingWrites} writes pending and {s.Item2} copies at the previous target, "
                    + "expected 2 pending (the running copy and the newer one) and 1 copy (the running one)");
            Assert.Equal(newTarget.Name, after.ActiveTarget);

            await lockGrain.ReleaseAsync(gate.FencingToken);
            gate = null;
            await Eventually.TrueAsync(async () => (await lockGrain.GetControlAsync()).PendingWrites == 0, "every write that was not cancelled commits");
            var read = await Cloud.FrontEnd(Cloud.Silos[1]).ReadAsync(v.Name, 0, 16384);
            Assert.Equal(busy, read[..4096]);
            Assert.Equal(new byte[4096], read[4096..8192]);
            Assert.Equal(newer, read[8192..]);
        }
        finally
        {
            DelegateEverythingTo(null);
            if (gate is not null) await lockGrain.ReleaseAsync(gate.FencingToken);
        }
    }
}
