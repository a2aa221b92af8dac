using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;
using Cloud.Storage.Devices;

namespace Cloud.Grains.Tests;

/// <summary>
/// A dead writer's slot is recovered a few stripes at a time: a partition whose locks are busy holds up the recovery
/// of that partition only, never the writers of a partition recovered before it (issue 14: "Exclusive lock on stripes
/// 84-104 not granted within 30 s" while the stripes already locked stalled their writers), a writer of a marked
/// partition waits for one step of its resync, not the whole partition's, and no lock the recovery holds runs out
/// while it waits for another.
/// </summary>
public sealed class WriterSlotRecoveryTests
{
    /// <summary>Bound on a lock of a partition that no one holds; the recovery's whole lock wait is 30 s.</summary>
    private static readonly TimeSpan FreeLockBound = TimeSpan.FromSeconds(10);

    /// <summary>One silo with 1 MiB partitions and a 4 MiB RAID-5 volume over three disks, opened there.</summary>
    private static async Task<(CloudCluster Cloud, VolumeInfo Volume, IVolumeStore Store)> StartAsync(
        string prefix,
        int chunkBytes,
        TimeSpan? lease = null)
    {
        var cloud = await CloudCluster.StartAsync(silos: 1, configure: o =>
        {
            o.PartitionTargetBytes = 1 << 20;
            if (lease is { } l) o.LockLease = l;
        });
        try
        {
            var v = await cloud.Client.CreateVolumeAsync(new VolumeSpec(
                prefix + "-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, chunkBytes, false));
            return (cloud, v, (await cloud.Service<OpenVolumeCache>(cloud.Silos[0]).OpenAsync(v.Name)).Store);
        }
        catch
        {
            await cloud.DisposeAsync();
            throw;
        }
    }

    /// <summary>Another writer's exclusive lock on one stripe, from the same silo.</summary>
    private static LockRequest Exclusive(CloudCluster cloud, long stripe) =>
        new(stripe, stripe, LockMode.Exclusive, cloud.Silos[0].SiloAddress.ToParsableString(), TimeSpan.FromMinutes(1), false);

    private static IPartitionLockGrain Partition(CloudCluster cloud, VolumeInfo v, long partition) =>
        cloud.Grains(cloud.Silos[0]).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, partition));

    [Fact]
    public async Task BusyPartition_HoldsUpOnlyItsOwnRecovery_NotThePartitionsRecoveredBeforeIt()
    {
        var (cloud, v, inner) = await StartAsync("slot", 64 << 10);
        await using var _ = cloud;
        var store = new MarkedSlotStore(inner, [(0, inner.StripeCount)]);
        var stripesPerPartition = VolumeMath.StripesPerPartition(v, 1 << 20);
        Assert.True(inner.StripeCount >= 2 * stripesPerPartition, "the volume spans fewer than two partitions");
        var locks = cloud.Service<HeldLocks>(cloud.Silos[0]);
        var partition0 = Partition(cloud, v, 0);
        var partition1 = Partition(cloud, v, 1);

        // Another writer holds a stripe of partition 1 while the recovery starts.
        var busy = await locks.AcquireAsync(partition1, Exclusive(cloud, stripesPerPartition));
        var recovery = cloud.Service<WriterSlotRecovery>(cloud.Silos[0]).RecoverAsync(new OpenVolume(v, store), 7);
        await Eventually.TrueAsync(
            async () => (await partition1.GetControlAsync()).Waiters == 1, "the recovery waiting for partition 1");

        // Partition 0 is recovered and free again: its writers do not wait for partition 1's.
        var first = await locks.AcquireAsync(partition0, Exclusive(cloud, 0)).WaitAsync(FreeLockBound);
        await locks.ReleaseAsync(partition0, first.FencingToken);
        Assert.Equal(stripesPerPartition, store.Resynced.Where(r => r.End <= stripesPerPartition).Sum(r => r.End - r.First));
        Assert.DoesNotContain(store.Resynced, r => r.End > stripesPerPartition);
        Assert.False(recovery.IsCompleted, "the recovery finished while a stripe it marks was locked by another writer");

        await locks.ReleaseAsync(partition1, busy.FencingToken);
        Assert.Equal(inner.StripeCount, await recovery.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(inner.StripeCount, store.Resynced.Sum(r => r.End - r.First));
        Assert.Equal([7], store.Cleared);
    }

    [Fact]
    public async Task AWriterOfAMarkedPartition_WaitsForOneStepOfTheResync_NotTheWholePartition()
    {
        var (cloud, v, inner) = await StartAsync("step", 16 << 10);
        await using var _ = cloud;
        var stripesPerPartition = VolumeMath.StripesPerPartition(v, 1 << 20);
        Assert.True(stripesPerPartition > WriterSlotRecovery.ResyncStepStripes && stripesPerPartition >= 16, "a partition holds too few stripes");
        // The whole first partition is marked; the resync of its first stripe is held up (a slow member).
        var store = new MarkedSlotStore(inner, [(0, stripesPerPartition)]) { HeldStripe = 0 };
        var locks = cloud.Service<HeldLocks>(cloud.Silos[0]);
        var partition0 = Partition(cloud, v, 0);
        var recovery = cloud.Service<WriterSlotRecovery>(cloud.Silos[0]).RecoverAsync(new OpenVolume(v, store), 7);
        await store.HeldStripeReached.Task.WaitAsync(FreeLockBound);

        // A writer of the partition's last stripe, which the recovery has not reached, is not held up by it.
        var writer = await locks.AcquireAsync(partition0, Exclusive(cloud, stripesPerPartition - 1))
            .WaitAsync(FreeLockBound);
        await locks.ReleaseAsync(partition0, writer.FencingToken);
        Assert.False(recovery.IsCompleted, "the recovery finished while its first stripe's resync was held up");

        store.ReleaseHeldStripe.SetResult();
        Assert.Equal(stripesPerPartition, await recovery.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(stripesPerPartition, store.Resynced.Sum(r => r.End - r.First));
        Assert.Equal([7], store.Cleared);
    }

    [Fact]
    public async Task APartitionWhosePiecesAreBusyLongerThanALease_IsRecovered_NotFencedMidway()
    {
        var lease = TimeSpan.FromSeconds(1);
        var (cloud, v, inner) = await StartAsync("lease", 16 << 10, lease);
        await using var _ = cloud;
        Assert.True(VolumeMath.StripesPerPartition(v, 1 << 20) > 8, "stripes 0 and 8 are not in one partition");
        // Two pieces of partition 0 are marked: stripe 0 and stripe 8.
        var store = new MarkedSlotStore(inner, [(0, 1), (8, 9)]);
        var locks = cloud.Service<HeldLocks>(cloud.Silos[0]);
        var partition0 = Partition(cloud, v, 0);

        // Another writer holds stripe 8 for three leases while the recovery starts.
        var busy = await locks.AcquireAsync(partition0, Exclusive(cloud, 8));
        var recovery = cloud.Service<WriterSlotRecovery>(cloud.Silos[0]).RecoverAsync(new OpenVolume(v, store), 7);
        await Eventually.TrueAsync(
            async () => (await partition0.GetControlAsync()).Waiters == 1, "the recovery waiting for stripe 8");
        await Task.Delay(lease * 3);
        await locks.ReleaseAsync(partition0, busy.FencingToken);

        // Holding stripe 0 while it waited for stripe 8 (the pieces of a partition locked one after another), the
        // recovery's lease on stripe 0 ran out and its renewal was refused: "fencing token ... is no longer current".
        Assert.Equal(2, await recovery.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal([(0L, 1L), (8L, 9L)], store.Resynced.Order());
        Assert.Equal([7], store.Cleared);
    }

    /// <summary>
    /// The stripes of one step are resynced together, not one after another: on the bed's saturated page blobs a dead
    /// writer's 342 marked stripes, one at a time, took 113 s, and the survivors' writes were slow for all of it.
    /// </summary>
    [Fact]
    public async Task AStepsStripes_AreResyncedTogether_NotOneAfterAnother()
    {
        var (cloud, v, inner) = await StartAsync("together", 16 << 10);
        await using var _ = cloud;
        var step = WriterSlotRecovery.ResyncStepStripes;
        Assert.True(VolumeMath.StripesPerPartition(v, 1 << 20) >= step && step > 1, "a partition holds less than a step");
        // One step's stripes are marked; the resync of its first stripe is held up (a slow member).
        var store = new MarkedSlotStore(inner, [(0, step)]) { HeldStripe = 0 };
        var recovery = cloud.Service<WriterSlotRecovery>(cloud.Silos[0]).RecoverAsync(new OpenVolume(v, store), 7);
        await store.HeldStripeReached.Task.WaitAsync(FreeLockBound);

        await Eventually.TrueAsync(
            () => { lock (store.Resynced) return Task.FromResult(store.Resynced.Count == step - 1); },
            "the step's other stripes resynced while its first is held up",
            TimeSpan.FromSeconds(10),
            TimeSpan.FromMilliseconds(50));
        Assert.False(recovery.IsCompleted, "the recovery finished while a stripe's resync was held up");
        store.ReleaseHeldStripe.SetResult();
        Assert.Equal(step, await recovery.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal([7], store.Cleared);
    }

    /// <summary>
    /// A dead silo's recovery that is told to stand down (the silo is back with the volume open, and recovers the marks
    /// it found itself) stops before its next step and leaves the slot's marks: cleared from here, they would erase the
    /// marks of the returned silo's own writes in flight in the same slot.
    /// </summary>
    [Fact]
    public async Task ARecoveryToldToStandDown_StopsBeforeItsNextStep_AndLeavesTheSlotUncleared()
    {
        var (cloud, v, inner) = await StartAsync("standdown", 16 << 10);
        await using var _ = cloud;
        var stripesPerPartition = VolumeMath.StripesPerPartition(v, 1 << 20);
        var store = new MarkedSlotStore(inner, [(0, stripesPerPartition)]);
        var asked = 0;
        var resynced = await cloud.Service<WriterSlotRecovery>(cloud.Silos[0])
            .RecoverAsync(new OpenVolume(v, store), 7, () => Task.FromResult(++asked > 2))
            .WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(2 * WriterSlotRecovery.ResyncStepStripes, resynced);
        Assert.Equal(resynced, store.Resynced.Sum(r => r.End - r.First));
        Assert.Empty(store.Cleared);
    }

    /// <summary>
    /// A finished resync step writes no new version, so it leaves the lock grain's knowledge of its stripes whole: the
    /// next writer of a recovered stripe needs no disk check. Released plainly, every step marked its stripes
    /// uncertain, and after a kill each later batch of the survivors read the block timestamps from the page blobs first.
    /// </summary>
    [Fact]
    public async Task RecoveredStripes_NeedNoDiskCheckBeforeTheirNextWrite()
    {
        var (cloud, v, inner) = await StartAsync("known", 16 << 10);
        await using var _ = cloud;
        var stripesPerPartition = VolumeMath.StripesPerPartition(v, 1 << 20);
        var store = new MarkedSlotStore(inner, [(0, stripesPerPartition)]);
        Assert.Equal(
            stripesPerPartition,
            await cloud.Service<WriterSlotRecovery>(cloud.Silos[0]).RecoverAsync(new OpenVolume(v, store), 7)
                .WaitAsync(TimeSpan.FromSeconds(30)));

        var partition0 = Partition(cloud, v, 0);
        var blocksPerStripe = (int)(VolumeMath.StripeDataBytes(v) / VolumeMath.BlockSizeBytes);
        for (var stripe = 0L; stripe < stripesPerPartition; stripe += WriterSlotRecovery.ResyncStepStripes)
        {
            var ts = await partition0.NextTimestampAsync(stripe, stripe, "test");
            var write = await partition0.AcquireForWriteAsync(
                Exclusive(cloud, stripe), stripe * blocksPerStripe, blocksPerStripe, [ts.Timestamp]);
            await partition0.CommitAsync(write.Grant.FencingToken, [], [ts.Timestamp], cloud.Silos[0].Name, release: true);
            Assert.False(write.DiskCheckNeeded, $"stripe {stripe} needs a disk check after its recovery");
        }
    }

    /// <summary>
    /// The engine with a dead writer's marks in a slot: resyncs and clears are recorded, and reach the real engine.
    /// </summary>
    private sealed class MarkedSlotStore(IVolumeStore inner, IReadOnlyList<(long First, long End)> marks) : IVolumeStore
    {
        public List<(long First, long End)> Resynced { get; } = [];
        public List<int> Cleared { get; } = [];

        public ValueTask<IReadOnlyList<(long First, long End)>> MarkedStripesOfSlotAsync(
            int writerSlot, CancellationToken cancellationToken) => ValueTask.FromResult(marks);

        /// <summary>A stripe whose resync waits for <see cref="ReleaseHeldStripe"/> (none when -1).</summary>
        public long HeldStripe { get; init; } = -1;

        public TaskCompletionSource HeldStripeReached { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource ReleaseHeldStripe { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async ValueTask<long> ResyncStripesAsync(
            long firstStripe, long endStripe, CancellationToken cancellationToken)
        {
            if (HeldStripe >= firstStripe && HeldStripe < endStripe)
            {
                HeldStripeReached.TrySetResult();
                await ReleaseHeldStripe.Task.ConfigureAwait(false);
            }
            lock (Resynced) Resynced.Add((firstStripe, endStripe));
            return await inner.ResyncStripesAsync(firstStripe, endStripe, cancellationToken).ConfigureAwait(false);
        }

        public ValueTask ClearWriterSlotAsync(int writerSlot, CancellationToken cancellationToken)
        {
            Cleared.Add(writerSlot);
            return ValueTask.CompletedTask;
        }

        public long CapacityBytes => inner.CapacityBytes;
        public long StripeDataBytes => inner.StripeDataBytes;
        public long StripeCount => inner.StripeCount;

        public long MemberBytesNeeded => inner.MemberBytesNeeded;
        public int BlockSizeBytes => inner.BlockSizeBytes;
        public VolumeHealthState Health => inner.Health;
        public ImmutableArray<DiskStatus> Members => inner.Members;
        public (long First, long Last) StripeRange(long offsetBytes, long lengthBytes) =>
            inner.StripeRange(offsetBytes, lengthBytes);
        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken) =>
            inner.ReadAsync(offsetBytes, destination, cancellationToken);
        public ValueTask WriteAsync(
            long offsetBytes, ReadOnlyMemory<byte> source, long writeTimestamp, bool forceUnitAccess,
            CancellationToken cancellationToken) =>
            inner.WriteAsync(offsetBytes, source, writeTimestamp, forceUnitAccess, cancellationToken);
        public ValueTask ReadBlockTimestampsAsync(
            long offsetBytes, Memory<long> timestamps, CancellationToken cancellationToken) =>
            inner.ReadBlockTimestampsAsync(offsetBytes, timestamps, cancellationToken);
        public ValueTask FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public ValueTask FlushEveryMemberAsync(CancellationToken cancellationToken) =>
            inner.FlushEveryMemberAsync(cancellationToken);
        public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken) =>
            inner.TrimAsync(offsetBytes, lengthBytes, cancellationToken);
        public ValueTask FailMemberAsync(int memberIndex, string reason) => inner.FailMemberAsync(memberIndex, reason);
        public ValueTask ReplaceMemberAsync(
            int memberIndex, string path, IBlockDevice? device, CancellationToken cancellationToken) =>
            inner.ReplaceMemberAsync(memberIndex, path, device, cancellationToken);
        public long RebuildCursorStripes => inner.RebuildCursorStripes;
        public long RebuildBytesMoved => inner.RebuildBytesMoved;
        public ValueTask RebuildStripesAsync(
            long endStripe, IProgress<(long Done, long Total, long BytesMoved)>? progress,
            CancellationToken cancellationToken) => inner.RebuildStripesAsync(endStripe, progress, cancellationToken);
        public ValueTask<ScrubResult> ScrubStripesAsync(
            long firstStripe, long lastStripe, bool repair, CancellationToken cancellationToken) =>
            inner.ScrubStripesAsync(firstStripe, lastStripe, repair, cancellationToken);
        public Guid VolumeId => inner.VolumeId;
        public ValueTask RefreshMembersAsync(CancellationToken cancellationToken) =>
            inner.RefreshMembersAsync(cancellationToken);
        public IReadOnlyList<int> WriterSlotsToRecover => [];
        public ValueTask<long> RecoverWriterSlotAsync(int writerSlot, CancellationToken cancellationToken) =>
            throw new NotSupportedException("the recovery under the cluster's locks resyncs part by part");
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
