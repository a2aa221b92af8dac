using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

/// <summary>
/// A RAID worker takes new non-FUA copies in only while its backlog is within what it commits in
/// <see cref="CommitPace.BacklogTarget"/> (issue 14: acknowledged copies queued without bound, and a kill left the
/// survivors minutes of them to write). Copies a client waits for, and re-sent ones, are never held back by it.
/// </summary>
public sealed class CommitPacingTests
{
    private const int CopyBytes = 1 << 20;

    /// <summary>Bound on a call that must not wait for the backlog.</summary>
    private static readonly TimeSpan PromptBound = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task NewCopyPastTheBacklogBound_WaitsForACommit_WhileAwaitedAndReSentCopiesAreTakenAtOnce()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var silo = cloud.Silos[0];
        var v = await cloud.Client.CreateVolumeAsync(new VolumeSpec(
            "pace-" + Guid.NewGuid().ToString("N")[..6], 16 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var scheduler = cloud.Service<WriteScheduler>(silo);
        var locks = cloud.Service<HeldLocks>(silo);
        var address = silo.SiloAddress.ToParsableString();
        var lockGrain = cloud.Grains(silo).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var stripeBytes = VolumeMath.StripeDataBytes(v);
        var lastStripe = (16L << 20) / stripeBytes - 1;

        async Task<ReplicatedWrite> CopyAsync(int index, bool fua, bool redelegated)
        {
            var offset = (long)index * CopyBytes;
            var grant = await lockGrain.NextTimestampAsync(offset / stripeBytes, (offset + CopyBytes - 1) / stripeBytes, address);
            // Another silo is the first server: it acknowledges a non-FUA copy as soon as this silo holds it.
            return new ReplicatedWrite(
                Guid.NewGuid(), v.Name, offset, Blocks.Pattern(CopyBytes, 60 + index), grant.Timestamp, fua,
                "another-silo", redelegated);
        }

        // The test holds every stripe, so nothing commits until it lets go: the backlog only grows.
        var hold = await locks.AcquireAsync(
            lockGrain, new LockRequest(0, lastStripe, LockMode.Exclusive, address, TimeSpan.FromMinutes(1), false));
        List<ReplicatedWrite> copies = [];
        for (var i = 0; i < CommitPace.MinBacklogBytes / CopyBytes; i++)
        {
            copies.Add(await CopyAsync(i, fua: false, redelegated: false));
            await scheduler.AcceptAsync(copies[^1]).WaitAsync(PromptBound);
        }
        var paced = await CopyAsync(copies.Count, fua: false, redelegated: false);
        var pacedAccept = scheduler.AcceptAsync(paced);
        await Eventually.TrueAsync(() => scheduler.PacedWaiters == 1, "the copy past the bound waiting for room");
        Assert.False(pacedAccept.IsCompleted, "a new copy past the backlog bound was taken in before any commit");

        var fua = await CopyAsync(copies.Count + 1, fua: true, redelegated: false);
        await scheduler.AcceptAsync(fua).WaitAsync(PromptBound);
        var resent = await CopyAsync(copies.Count + 2, fua: false, redelegated: true);
        await scheduler.AcceptAsync(resent).WaitAsync(PromptBound);
        Assert.False(pacedAccept.IsCompleted, "the paced copy was taken in before any commit");

        await locks.ReleaseAsync(lockGrain, hold.FencingToken);
        await pacedAccept.WaitAsync(TimeSpan.FromSeconds(30));
        foreach (var copy in copies.Append(paced).Append(fua).Append(resent))
            Assert.Equal(
                WriteOutcome.Committed, (await scheduler.WaitAsync(copy.WriteId, TimeSpan.FromSeconds(30))).Outcome);
        Assert.Equal(paced.Data, await cloud.FrontEnd(silo).ReadAsync(v.Name, paced.OffsetBytes, CopyBytes));
    }
}
