using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// Write-hole recovery of a writer slot under the cluster's partition locks (docs/WRITE-HOLE.md). A resync rewrites a
/// stripe's parity from the data it reads; while another silo writes the stripe, that parity is computed from data
/// the writer is replacing, and the stripe is left with parity that disagrees with its data (a member lost later is
/// then rebuilt from that parity: an acknowledged write lost with a clean scrub). So each stripe is resynced under an
/// exclusive lock; the rest of the volume keeps serving meanwhile.
/// </summary>
/// <remarks>
/// A few stripes at a time (<see cref="ResyncStepStripes"/>): a step's stripes are locked, resynced and released
/// before the next step's are asked for, in stripe order, and the slot is cleared only after the last. A writer meets
/// the recovery for at most one step's resync. Two earlier designs stalled the survivors after a kill: all marked
/// stripes of the volume locked before any resync (30 s per attempt), then one partition's marked stripes at a time
/// (a dead writer's intent regions mark most of a busy volume, and on page blobs under load a partition's resync took
/// seconds, which every writer of the partition waited out; worse, the locks of a partition's first pieces were held
/// while its later pieces were waited for, their leases ran out, and the attempt failed and started over: on the
/// three-host bed, survivors' writes were slow for two minutes after the kill). No lock is held while another is waited
/// for, so a lease only has to outlast one step, and it is renewed within the step when the step is slow. A step's
/// stripes are resynced at once (the engine locks each stripe on its own): one at a time, a dead writer's 342 marked
/// stripes took 113 s on the bed's saturated page blobs, and the survivors' writes were slow all that time. A scrub on
/// another silo may reach a marked stripe before this recovery does; it resyncs that stripe itself rather than report
/// it (<see cref="RaidMaintenance.ScrubAsync"/>).
/// </remarks>
public sealed partial class WriterSlotRecovery(
    IGrainFactory grains,
    ILocalSiloDetails silo,
    HeldLocks heldLocks,
    IOptions<CloudOptions> options,
    ILogger<WriterSlotRecovery> logger)
{
    /// <summary>Stripes locked and resynced together (one lock call per step).</summary>
    public const int ResyncStepStripes = 4;

    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>
    /// Resyncs the stripes writer slot <paramref name="writerSlot"/> marks in <paramref name="v"/>, partition by
    /// partition under that partition's exclusive locks, then clears the slot; returns the stripes resynced.
    /// </summary>
    /// <param name="v">The volume, open here.</param>
    /// <param name="writerSlot">The slot to recover.</param>
    /// <param name="standDown">
    /// Asked before each step and before the clear: true ends the recovery there, with the slot left as it is. A dead
    /// silo's recovery stands down once a silo of that name is back with the volume open: the new incarnation writes
    /// through the same slot and recovers the marks it found there itself, so a clear from here would erase the marks
    /// of its own writes in flight, and going on would resync the same stripes twice on the same disks (on the bed,
    /// the returned silo's own recovery then ran 57 s beside the survivors' writes after the next kill).
    /// </param>
    public async Task<long> RecoverAsync(OpenVolume v, int writerSlot, Func<Task<bool>>? standDown = null)
    {
        // A dead writer's marks do not change between this read and the resync; a live writer's (this silo's own
        // slot) may grow, but its new marks are for writes it makes under these same locks, which are then not in
        // flight on the stripes locked here.
        var marked = await v.Store.MarkedStripesOfSlotAsync(writerSlot, CancellationToken.None).ConfigureAwait(false);
        if (marked.Count == 0) return 0;
        long resynced = 0;
        foreach (var partition in ByPartition(v, marked))
        {
            var done = await ResyncPartitionAsync(v, partition, standDown).ConfigureAwait(false);
            resynced += done.Stripes;
            if (!done.Finished)
            {
                LogStoodDown(logger, v.Info.Name, writerSlot, resynced);
                return resynced;
            }
        }
        if (standDown is not null && await standDown().ConfigureAwait(false))
        {
            LogStoodDown(logger, v.Info.Name, writerSlot, resynced);
            return resynced;
        }
        await v.Store.ClearWriterSlotAsync(writerSlot, CancellationToken.None).ConfigureAwait(false);
        LogSlotRecovered(logger, v.Info.Name, writerSlot, resynced);
        return resynced;
    }

    /// <summary>
    /// Recovers the writer slots an engine just opened here left to its host (<see cref="Engine.IVolumeStore.WriterSlotsToRecover"/>),
    /// one after another. Runs beside the volume's I/O, so that the open does not wait for locks that a caller of the
    /// open (a read under its shared lock) may hold; failures are logged, and the next open tries again.
    /// </summary>
    internal async Task RecoverOpenedAsync(OpenVolume v)
    {
        foreach (var slot in v.Store.WriterSlotsToRecover)
        {
            try { await RecoverAsync(v, slot).ConfigureAwait(false); }
            catch (ObjectDisposedException) { return; /* closed meanwhile: the next open recovers the slot */ }
            catch (Exception ex) { LogOpenRecoveryFailed(logger, v.Info.Name, slot, ex); }
        }
    }

    /// <summary>
    /// Splits the stripe ranges <paramref name="marked"/> (end exclusive) at partition boundaries and groups the pieces
    /// by partition, in partition order (the order every writer takes locks in).
    /// </summary>
    internal static List<(long Partition, List<(long First, long Last)> Pieces)> ByPartition(
        long stripesPerPartition,
        IReadOnlyList<(long First, long End)> marked)
    {
        var pieces = new SortedDictionary<long, List<(long First, long Last)>>();
        foreach (var (first, end) in marked)
        {
            for (var s = first; s < end;)
            {
                var partition = s / stripesPerPartition;
                var pieceEnd = Math.Min(end, (partition + 1) * stripesPerPartition);
                if (!pieces.TryGetValue(partition, out var list)) pieces[partition] = list = [];
                list.Add((s, pieceEnd - 1));
                s = pieceEnd;
            }
        }
        return [.. pieces.Select(p => (p.Key, p.Value))];
    }

    private List<(long Partition, List<(long First, long Last)> Pieces)> ByPartition(
        OpenVolume v,
        IReadOnlyList<(long First, long End)> marked) =>
        ByPartition(VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes), marked);

    /// <summary>
    /// Resyncs one partition's marked stripes, step by step, each step under its own exclusive lock; stops before a
    /// step when <paramref name="standDown"/> says so (Finished false).
    /// </summary>
    private async Task<(long Stripes, bool Finished)> ResyncPartitionAsync(
        OpenVolume v,
        (long Partition, List<(long First, long Last)> Pieces) partition,
        Func<Task<bool>>? standDown)
    {
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, partition.Partition));
        long resynced = 0;
        foreach (var (first, last) in partition.Pieces)
        {
            for (var s = first; s <= last; s += ResyncStepStripes)
            {
                if (standDown is not null && await standDown().ConfigureAwait(false)) return (resynced, false);
                resynced += await ResyncStepAsync(v, lockGrain, s, Math.Min(last + 1, s + ResyncStepStripes))
                    .ConfigureAwait(false);
            }
        }
        return (resynced, true);
    }

    /// <summary>
    /// Locks stripes [<paramref name="first"/>, <paramref name="end"/>) exclusively, resyncs them together, and
    /// releases the lock. The lease is renewed every third of it while the step runs: a lease that ran out would let a
    /// writer in under the resync, so a renewal the grain refuses (fenced) ends the recovery, and the next attempt
    /// starts over. A resync writes no new version (parity recomputed from the data as it is), so a finished step
    /// commits nothing and leaves the grain's knowledge of the stripes whole; only a step that failed part way is
    /// released plainly, which marks its stripes uncertain. Every step released plainly made each later writer of the
    /// partition read the block timestamps from disk before its write (past 64 such ranges the whole partition), for
    /// as long as the lock grain lived.
    /// </summary>
    private async Task<long> ResyncStepAsync(OpenVolume v, IPartitionLockGrain lockGrain, long first, long end)
    {
        var lease = _options.LockLease;
        var grant = await heldLocks.AcquireAsync(
            lockGrain, new LockRequest(first, end - 1, LockMode.Exclusive, _siloAddress, lease, false))
            .ConfigureAwait(false);
        using var stepDone = new CancellationTokenSource();
        var renewing = HeldLocks.RenewUntilCancelledAsync(lockGrain, grant.FencingToken, lease, stepDone.Token);
        try
        {
            var stripes = new Task[end - first];
            for (var s = first; s < end; s++)
                stripes[s - first] = v.Store.ResyncStripesAsync(s, s + 1, CancellationToken.None).AsTask();
            try { await Task.WhenAll(stripes).ConfigureAwait(false); }
            finally { await stepDone.CancelAsync().ConfigureAwait(false); }
            await renewing.ConfigureAwait(false);
        }
        catch
        {
            await stepDone.CancelAsync().ConfigureAwait(false);
            try { await heldLocks.ReleaseAsync(lockGrain, grant.FencingToken).ConfigureAwait(false); }
            catch (Exception ex) { LogReleaseFailed(logger, v.Info.Name, ex); }
            throw;
        }
        await heldLocks.CommitAsync(lockGrain, grant.FencingToken, [], [], silo.Name, release: true)
            .ConfigureAwait(false);
        return end - first;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: intent slot {Slot} recovered, {Stripes} stripes resynced")]
    private static partial void LogSlotRecovered(ILogger logger, string volume, int slot, long stripes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: recovery of intent slot {Slot} stood down after {Stripes} stripes: its writer is back and recovers the slot itself")]
    private static partial void LogStoodDown(ILogger logger, string volume, int slot, long stripes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: releasing a lock after a slot recovery failed")]
    private static partial void LogReleaseFailed(ILogger logger, string volume, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: recovering intent slot {Slot} after the open failed")]
    private static partial void LogOpenRecoveryFailed(ILogger logger, string volume, int slot, Exception exception);
}
