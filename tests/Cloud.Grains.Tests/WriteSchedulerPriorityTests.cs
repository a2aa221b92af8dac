using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

/// <summary>
/// The RAID worker's schedule after a silo died (issue 14, the kill): the first servers re-send every copy the dead
/// silo held, hundreds of copies acknowledged long ago, and a new write whose client waits for its commit must not
/// queue behind them.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class WriteSchedulerPriorityTests(SharedClusterFixture fixture)
{
    /// <summary>Stripes whose re-sent copies the test holds back behind its own lock: more than every batch slot.</summary>
    private const int BacklogStripes = CloudOptions.DefaultMaxConcurrentBatches + 4;

    /// <summary>Bound on the awaited copy's commit; without the priority it waits until the test lets the backlog go.</summary>
    private static readonly TimeSpan CommitTimeout = TimeSpan.FromSeconds(10);

    private CloudCluster Cloud => fixture.Cloud;

    [Fact]
    public async Task ACopyAClientWaitsFor_CommitsWhileEveryBatchSlotCouldBeHeldByReSentCopies()
    {
        var v = await Cloud.Client.CreateVolumeAsync(new VolumeSpec(
            "priority-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var (target, firstServer) = (Cloud.Silos[0], Cloud.Silos[1]);
        var scheduler = Cloud.Service<WriteScheduler>(target);
        var stripeBytes = 2L * (64 << 10);
        var lockGrain = Cloud.Grains(target).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var firstServerAddress = firstServer.SiloAddress.ToParsableString();

        async Task<ReplicatedWrite> CopyAsync(long stripe, bool redelegated, bool fua, string from, int seed)
        {
            var grant = await lockGrain.NextTimestampAsync(stripe, stripe, firstServerAddress);
            return new ReplicatedWrite(
                Guid.NewGuid(), v.Name, stripe * stripeBytes, Blocks.Pattern(4096, seed), grant.Timestamp, fua, from,
                redelegated);
        }

        // The test holds the backlog's stripes, so none of its copies can reach disk until the test lets them.
        var gate = await lockGrain.AcquireAsync(new LockRequest(
            0, BacklogStripes - 1, LockMode.Exclusive, firstServerAddress, TimeSpan.FromMinutes(2), false));
        var released = false;
        try
        {
            var backlog = new List<ReplicatedWrite>();
            for (var s = 0; s < BacklogStripes; s++)
            {
                var copy = await CopyAsync(s, redelegated: true, fua: false, firstServer.Name, seed: s);
                await scheduler.AcceptAsync(copy);
                backlog.Add(copy);
            }
            Assert.Equal(BacklogStripes, scheduler.QueueDepth);

            // A new write whose first server is the target itself: its client waits for this commit.
            var awaited = await CopyAsync(BacklogStripes + 2, redelegated: false, fua: false, target.Name, seed: 99);
            await scheduler.AcceptAsync(awaited);
            var report = await scheduler.WaitAsync(awaited.WriteId, CommitTimeout);
            Assert.True(report.Outcome == WriteOutcome.Committed,
                $"the copy a client waits for is {report.Outcome} after {CommitTimeout.TotalSeconds} s behind {BacklogStripes} re-sent copies held back by a lock");

            await lockGrain.ReleaseAsync(gate.FencingToken);
            released = true;
            foreach (var copy in backlog)
                Assert.Equal(WriteOutcome.Committed, (await scheduler.WaitAsync(copy.WriteId, TimeSpan.FromSeconds(30))).Outcome);
            var read = await Cloud.FrontEnd(firstServer).ReadAsync(v.Name, (BacklogStripes + 2) * stripeBytes, 4096);
            Assert.Equal(awaited.Data, read);
        }
        finally
        {
            if (!released) await lockGrain.ReleaseAsync(gate.FencingToken);
        }
    }
}
