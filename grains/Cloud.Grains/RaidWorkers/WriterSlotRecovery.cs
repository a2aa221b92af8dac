using System.Diagnostics;
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
/// then rebuilt from that parity: an acknowledged write lost with a clean scrub). So the stripes the slot marks are
/// locked exclusively first; the rest of the volume keeps serving meanwhile.
/// </summary>
/// <remarks>
/// One partition at a time, under one lock call: the partition's marked stripes (from its first to its last) are
/// locked, resynced and released before the next partition's are asked for, and the slot is cleared only after the
/// last. No lock is held while another is waited for: the earlier designs did, first every partition's locks of the
/// volume (30 s per attempt after a kill), then a partition's pieces one after another, and the leases of the first
/// pieces ran out while a later piece was waited for, so the attempt failed and started over (on the three-host bed,
/// survivors' writes stayed slow for two minutes after a kill). The lease is renewed during the resync once a third of
/// it has passed. Locking a few stripes at a time instead would let the writers of a partition wait less, but a
/// scrub on another silo then overtakes the recovery and reports the stripes not yet resynced as mismatches.
/// </remarks>
public sealed partial class WriterSlotRecovery(
    IGrainFactory grains,
    ILocalSiloDetails silo,
    HeldLocks heldLocks,
    IOptions<CloudOptions> options,
    ILogger<WriterSlotRecovery> logger)
{
    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>
    /// Resyncs the stripes writer slot <paramref name="writerSlot"/> marks in <paramref name="v"/>, partition by
    /// partition under that partition's exclusive locks, then clears the slot; returns the stripes resynced.
    /// </summary>
    public async Task<long> RecoverAsync(OpenVolume v, int writerSlot)
    {
        // A dead writer's marks do not change between this read and the resync; a live writer's (this silo's own
        // slot) may grow, but its new marks are for writes it makes under these same locks, which are then not in
        // flight on the stripes locked here.
        var marked = await v.Store.MarkedStripesOfSlotAsync(writerSlot, CancellationToken.None).ConfigureAwait(false);
        if (marked.Count == 0) return 0;
        long resynced = 0;
        foreach (var partition in ByPartition(v, marked))
            resynced += await ResyncPartitionAsync(v, partition).ConfigureAwait(false);
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
    /// Locks one partition's marked stripes exclusively (one range, its first to its last marked stripe), resyncs the
    /// marked ones stripe by stripe, and releases the lock. The lease is renewed before a stripe once a third of it has
    /// passed: a lease that ran out would let a writer in under the resync. A renewal the grain refuses (fenced) ends
    /// the recovery; the next attempt starts over.
    /// </summary>
    private async Task<long> ResyncPartitionAsync(
        OpenVolume v,
        (long Partition, List<(long First, long Last)> Pieces) partition)
    {
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, partition.Partition));
        var lease = _options.LockLease;
        var grant = await heldLocks.AcquireAsync(
            lockGrain,
            new LockRequest(
                partition.Pieces.Min(p => p.First), partition.Pieces.Max(p => p.Last), LockMode.Exclusive, _siloAddress,
                lease, false))
            .ConfigureAwait(false);
        try
        {
            long resynced = 0;
            var renewed = Stopwatch.GetTimestamp();
            foreach (var (first, last) in partition.Pieces)
            {
                for (var s = first; s <= last; s++)
                {
                    if (Stopwatch.GetElapsedTime(renewed) > lease / 3)
                    {
                        await lockGrain.RenewAsync(grant.FencingToken, lease).ConfigureAwait(false);
                        renewed = Stopwatch.GetTimestamp();
                    }
                    resynced += await v.Store.ResyncStripesAsync(s, s + 1, CancellationToken.None).ConfigureAwait(false);
                }
            }
            return resynced;
        }
        finally
        {
            try { await heldLocks.ReleaseAsync(lockGrain, grant.FencingToken).ConfigureAwait(false); }
            catch (Exception ex) { LogReleaseFailed(logger, v.Info.Name, ex); }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: intent slot {Slot} recovered, {Stripes} stripes resynced")]
    private static partial void LogSlotRecovered(ILogger logger, string volume, int slot, long stripes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: releasing a lock after a slot recovery failed")]
    private static partial void LogReleaseFailed(ILogger logger, string volume, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: recovering intent slot {Slot} after the open failed")]
    private static partial void LogOpenRecoveryFailed(ILogger logger, string volume, int slot, Exception exception);
}
