using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

[Collection(nameof(SharedCluster))]
public sealed class TimestampTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    private async Task<VolumeInfo> CreateAsync(string prefix) =>
        await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec(
                prefix + "-" + Guid.NewGuid().ToString("N")[..6],
                4 << 20,
                VolumeLevel.Raid5,
                3,
                64 << 10,
                false));

    private static ReplicatedWrite Copy(VolumeInfo v, long offset, byte[] data, long timestamp) =>
        new(Guid.NewGuid(), v.Name, offset, data, timestamp, false, "test");

    [Fact]
    public async Task StaleTimestamp_IsRejectedAsSuperseded_AlsoAfterTheLockGrainMoves()
    {
        var v = await CreateAsync("stale");
        var grains = Cloud.Grains(Cloud.Silos[0]);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var older = await lockGrain.NextTimestampAsync(0, 0, "test");
        var newer = await lockGrain.NextTimestampAsync(0, 0, "test");
        Assert.True(newer.Timestamp > older.Timestamp);

        var worker = grains.GetGrain<IRaidWorkerGrain>(Cloud.Silos[1].Name);
        var newData = Blocks.Pattern(8192, 10);
        var winner = Copy(v, 0, newData, newer.Timestamp);
        await worker.AcceptAsync(winner);
        Assert.Equal(
            WriteOutcome.Committed,
            (await worker.WaitCommittedAsync(winner.WriteId, TimeSpan.FromSeconds(30))).Outcome);

        var stale = Copy(v, 0, Blocks.Pattern(8192, 11), older.Timestamp);
        await worker.AcceptAsync(stale);
        Assert.Equal(
            WriteOutcome.Superseded,
            (await worker.WaitCommittedAsync(stale.WriteId, TimeSpan.FromSeconds(30))).Outcome);
        Assert.Equal(newData, await Cloud.FrontEnd(Cloud.Silos[2]).ReadAsync(v.Name, 0, 8192));

        // The lock grain forgets everything when it deactivates; the engine's on-disk block timestamps still reject
        // the stale copy, and the next timestamp is still newer than everything handed out before.
        await Cloud.Cluster.DeactivateAsync(lockGrain);
        var again = Copy(v, 0, Blocks.Pattern(8192, 12), older.Timestamp);
        await worker.AcceptAsync(again);
        Assert.Equal(
            WriteOutcome.Superseded,
            (await worker.WaitCommittedAsync(again.WriteId, TimeSpan.FromSeconds(30))).Outcome);
        Assert.Equal(newData, await Cloud.FrontEnd(Cloud.Silos[0]).ReadAsync(v.Name, 0, 8192));
        var afterMove = await lockGrain.NextTimestampAsync(0, 0, "test");
        Assert.True(
            afterMove.Timestamp > newer.Timestamp,
            $"timestamp {afterMove.Timestamp} after reactivation is not above {newer.Timestamp}");
        await lockGrain.SettleAsync([older.Timestamp, newer.Timestamp, afterMove.Timestamp]);
    }

    [Fact]
    public async Task PartlySupersededCopy_WritesOnlyItsNewerBlocks()
    {
        var v = await CreateAsync("partial");
        var grains = Cloud.Grains(Cloud.Silos[0]);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var older = await lockGrain.NextTimestampAsync(0, 0, "test");
        var newer = await lockGrain.NextTimestampAsync(0, 0, "test");
        var worker = grains.GetGrain<IRaidWorkerGrain>(Cloud.Silos[0].Name);
        var newBlock = Blocks.Pattern(4096, 20);
        var first = Copy(v, 4096, newBlock, newer.Timestamp);
        await worker.AcceptAsync(first);
        await worker.WaitCommittedAsync(first.WriteId, TimeSpan.FromSeconds(30));
        var wide = Blocks.Pattern(3 * 4096, 21);
        var late = Copy(v, 0, wide, older.Timestamp);
        await worker.AcceptAsync(late);
        Assert.Equal(
            WriteOutcome.Committed, (await worker.WaitCommittedAsync(late.WriteId, TimeSpan.FromSeconds(30))).Outcome);
        var read = await Cloud.FrontEnd(Cloud.Silos[1]).ReadAsync(v.Name, 0, 3 * 4096);
        Assert.Equal(wide[..4096], read[..4096]);
        Assert.Equal(newBlock, read[4096..8192]);
        Assert.Equal(wide[8192..], read[8192..]);
    }

    [Fact]
    public async Task SupersededScheduledVersion_IsCancelledAndNeverWritten()
    {
        var v = await CreateAsync("cancel");
        var target = Cloud.Silos[2];
        var settings = Cloud.Service<SiloRuntimeSettings>(target);
        var grains = Cloud.Grains(Cloud.Silos[0]);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var worker = grains.GetGrain<IRaidWorkerGrain>(target.Name);
        settings.InjectedDiskLatency = TimeSpan.FromSeconds(1);
        try
        {
            // A slow write occupies the stripe, so the next copy of that stripe waits in the schedule.
            var t0 = await lockGrain.NextTimestampAsync(0, 0, "test");
            var busy = Copy(v, 0, Blocks.Pattern(4096, 30), t0.Timestamp);
            await worker.AcceptAsync(busy);
            var t1 = await lockGrain.NextTimestampAsync(0, 0, "test");
            var scheduled = Copy(v, 8192, Blocks.Pattern(8192, 31), t1.Timestamp);
            await worker.AcceptAsync(scheduled);
            var t2 = await lockGrain.NextTimestampAsync(0, 0, "test");

            var cancelled = await worker.CancelSupersededAsync(v.Name, 8192, 8192, t2.Timestamp);

            Assert.Equal(1, cancelled);
            Assert.Equal(
                WriteOutcome.Cancelled,
                (await worker.WaitCommittedAsync(scheduled.WriteId, TimeSpan.FromSeconds(30))).Outcome);
            Assert.Equal(
                WriteOutcome.Committed,
                (await worker.WaitCommittedAsync(busy.WriteId, TimeSpan.FromSeconds(30))).Outcome);
            await lockGrain.SettleAsync([t2.Timestamp]);
            settings.InjectedDiskLatency = TimeSpan.Zero;
            Assert.Equal(new byte[8192], await Cloud.FrontEnd(Cloud.Silos[1]).ReadAsync(v.Name, 8192, 8192));
            Assert.Equal(0, (await lockGrain.GetControlAsync()).PendingWrites);
        }
        finally
        {
            settings.InjectedDiskLatency = TimeSpan.Zero;
        }
    }
    [Fact]
    public async Task WriteLock_AsksForTheDiskCheck_OnlyWhenTheGrainCannotProveItKnowsTheNewestVersion()
    {
        var v = await CreateAsync("diskcheck");
        var grains = Cloud.Grains(Cloud.Silos[0]);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var holder = Cloud.Silos[1].SiloAddress.ToParsableString();
        LockRequest Exclusive(long stripe)
            => new(stripe, stripe, LockMode.Exclusive, holder, TimeSpan.FromMinutes(1), false);
        var blocksPerStripe = (int)(VolumeMath.StripeDataBytes(v) / VolumeMath.BlockSizeBytes);

        // Timestamped by this activation, no writer lost: the grain's committed map is complete.
        var t1 = await lockGrain.NextTimestampAsync(0, 0, "test");
        var first = await lockGrain.AcquireForWriteAsync(Exclusive(0), 0, blocksPerStripe, [t1.Timestamp]);
        Assert.False(first.DiskCheckNeeded);
        await lockGrain.CommitAsync(
            first.Grant.FencingToken,
            [new BlockCommit(0, 1, t1.Timestamp)],
            [t1.Timestamp],
            Cloud.Silos[1].Name,
            release: true);

        // A writer of stripe 0 ends without committing (it may have written blocks first): stripe 0 needs the disk
        // check from now on, stripe 1 does not.
        var t2 = await lockGrain.NextTimestampAsync(0, 1, "test");
        var lost = await lockGrain.AcquireForWriteAsync(Exclusive(0), 0, blocksPerStripe, [t2.Timestamp]);
        await lockGrain.ReleaseAsync(lost.Grant.FencingToken);
        var again = await lockGrain.AcquireForWriteAsync(Exclusive(0), 0, blocksPerStripe, [t2.Timestamp]);
        Assert.True(again.DiskCheckNeeded);
        Assert.Equal(t1.Timestamp, again.Validation.CommittedTimestamps[0]);
        await lockGrain.ReleaseAsync(again.Grant.FencingToken);
        var other = await lockGrain.AcquireForWriteAsync(
            Exclusive(1), blocksPerStripe, blocksPerStripe, [t2.Timestamp]);
        Assert.False(other.DiskCheckNeeded);
        await lockGrain.CommitAsync(other.Grant.FencingToken, [], [t2.Timestamp], Cloud.Silos[1].Name, release: true);

        // After the grain moves, a version timestamped by the earlier activation needs the disk check; a new one does
        // not.
        await Cloud.Cluster.DeactivateAsync(lockGrain);
        var older = await lockGrain.AcquireForWriteAsync(
            Exclusive(1), blocksPerStripe, blocksPerStripe, [t2.Timestamp]);
        Assert.True(older.DiskCheckNeeded);
        await lockGrain.ReleaseAsync(older.Grant.FencingToken);
        var t3 = await lockGrain.NextTimestampAsync(2, 2, "test");
        var fresh = await lockGrain.AcquireForWriteAsync(
            Exclusive(2), 2L * blocksPerStripe, blocksPerStripe, [t3.Timestamp]);
        Assert.False(fresh.DiskCheckNeeded);
        await lockGrain.CommitAsync(fresh.Grant.FencingToken, [], [t3.Timestamp], Cloud.Silos[1].Name, release: true);
    }
    /// <summary>
    /// Many writers of the same few stripes that end uncommitted (a step-wise job failing again and again, a dead
    /// silo's batches) are one uncertain range, not one each: counted one by one they passed the 64-range bound and
    /// made every stripe of the partition ask the disk before each write for the rest of the grain's life.
    /// </summary>
    [Fact]
    public async Task UncommittedEndsOfNeighbouringStripes_StayOneUncertainRange_NotTheWholePartition()
    {
        var v = await CreateAsync("uncertain");
        var lockGrain = Cloud.Grains(Cloud.Silos[0]).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var holder = Cloud.Silos[1].SiloAddress.ToParsableString();
        var blocksPerStripe = (int)(VolumeMath.StripeDataBytes(v) / VolumeMath.BlockSizeBytes);
        Assert.True(VolumeMath.StripesPerPartition(v, Cloud.Service<Microsoft.Extensions.Options.IOptions<CloudOptions>>(Cloud.Silos[0]).Value.PartitionTargetBytes) > 4, "a partition holds too few stripes");
        var ts = await lockGrain.NextTimestampAsync(0, 4, "test");
        LockRequest Exclusive(long stripe) => new(stripe, stripe, LockMode.Exclusive, holder, TimeSpan.FromMinutes(1), false);

        // Stripes 0-2, one after another, more times than the grain keeps ranges.
        for (var i = 0; i <= PartitionLockGrain.MaxUncertainRanges; i++)
        {
            var grant = await lockGrain.AcquireAsync(Exclusive(i % 3));
            await lockGrain.ReleaseAsync(grant.FencingToken);
        }

        var inside = await lockGrain.AcquireForWriteAsync(Exclusive(1), blocksPerStripe, blocksPerStripe, [ts.Timestamp]);
        Assert.True(inside.DiskCheckNeeded);
        await lockGrain.ReleaseAsync(inside.Grant.FencingToken);
        var outside = await lockGrain.AcquireForWriteAsync(
            Exclusive(4), 4L * blocksPerStripe, blocksPerStripe, [ts.Timestamp]);
        Assert.False(outside.DiskCheckNeeded);
        await lockGrain.CommitAsync(outside.Grant.FencingToken, [], [ts.Timestamp], Cloud.Silos[1].Name, release: true);
    }

    /// <summary>
    /// The loss of the multi-host kill trials (an older acknowledged version where a newer one was acknowledged): a
    /// version timestamped by a partition-lock grain that then died is still in flight, known to no one the next
    /// activation asks (its first server had not yet recorded it as held, or it gave it up). A batch that merged an
    /// older re-sent copy with a newer adjacent one under the newest timestamp stamped the older copy's block with a
    /// timestamp above the in-flight version, which then arrived and was dropped as superseded.
    /// </summary>
    [Fact]
    public async Task VersionInFlightAcrossALockGrainMove_IsNotSupersededByAnOlderCopyMergedUnderANewerTimestamp()
    {
        var v = await CreateAsync("inflight");
        var target = Cloud.Silos[2];
        var settings = Cloud.Service<SiloRuntimeSettings>(target);
        var grains = Cloud.Grains(Cloud.Silos[0]);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var worker = grains.GetGrain<IRaidWorkerGrain>(target.Name);
        const int block = VolumeMath.BlockSizeBytes;
        var older = await lockGrain.NextTimestampAsync(0, 0, "test");
        var inFlight = await lockGrain.NextTimestampAsync(0, 0, "test");
        await Cloud.Cluster.DeactivateAsync(lockGrain);
        var busyStamp = await lockGrain.NextTimestampAsync(0, 0, "test");
        var newer = await lockGrain.NextTimestampAsync(0, 0, "test");
        settings.InjectedDiskLatency = TimeSpan.FromSeconds(1);
        try
        {
            // A slow write holds stripe 0, so the older copy of block 0 and the newer one of block 1 queue behind it
            // and run as one batch, adjacent.
            var busy = Copy(v, 8 * block, Blocks.Pattern(block, 40), busyStamp.Timestamp);
            await worker.AcceptAsync(busy);
            var olderCopy = Copy(v, 0, Blocks.Pattern(block, 41), older.Timestamp);
            var newerCopy = Copy(v, block, Blocks.Pattern(block, 42), newer.Timestamp);
            await worker.AcceptAsync(olderCopy);
            await worker.AcceptAsync(newerCopy);
            foreach (var copy in new[] { busy, olderCopy, newerCopy })
                Assert.Equal(
                    WriteOutcome.Committed,
                    (await worker.WaitCommittedAsync(copy.WriteId, TimeSpan.FromSeconds(30))).Outcome);
        }
        finally
        {
            settings.InjectedDiskLatency = TimeSpan.Zero;
        }

        // The version timestamped between the two arrives last (re-sent after its target died): it is the newest of
        // block 0 and must be what block 0 holds.
        var acknowledged = Blocks.Pattern(block, 43);
        var late = Copy(v, 0, acknowledged, inFlight.Timestamp);
        await worker.AcceptAsync(late);
        Assert.Equal(
            WriteOutcome.Committed, (await worker.WaitCommittedAsync(late.WriteId, TimeSpan.FromSeconds(30))).Outcome);
        Assert.Equal(acknowledged, await Cloud.FrontEnd(Cloud.Silos[1]).ReadAsync(v.Name, 0, block));
        Assert.Equal(Blocks.Pattern(block, 42), await Cloud.FrontEnd(Cloud.Silos[1]).ReadAsync(v.Name, block, block));
    }
}
