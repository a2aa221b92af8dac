using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// The RAID worker's calls besides delegated writes and reads: trim, close, status, member failure and replacement,
/// rebuild and scrub; and the cluster safety of the engines on several silos: adopting other silos' member changes,
/// and resyncing a dead silo's write-intent slot (docs/WRITE-HOLE.md, "A dead silo's slot").
/// </summary>
public sealed partial class RaidMaintenance(
    OpenVolumeCache volumes,
    VolumeDirectory directory,
    IGrainFactory grains,
    ILocalSiloDetails silo,
    HeldLocks heldLocks,
    IOptions<CloudOptions> options,
    ILogger<RaidMaintenance> logger)
{
    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>
    /// Discards a range under exclusive locks, after every earlier pending write of it, with a new timestamp so older
    /// copies stay dropped.
    /// </summary>
    public async Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v.Info, offsetBytes, lengthBytes);
        var stripesPerPartition = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        var stripeBytes = v.Store.StripeDataBytes;
        var end = offsetBytes + lengthBytes;
        for (var offset = offsetBytes; offset < end;)
        {
            var partition = offset / stripeBytes / stripesPerPartition;
            var pieceEnd = Math.Min(end, (partition + 1) * stripesPerPartition * stripeBytes);
            await TrimPieceAsync(v, partition, offset, pieceEnd).ConfigureAwait(false);
            offset = pieceEnd;
        }
    }

    private async Task TrimPieceAsync(OpenVolume v, long partition, long offset, long pieceEnd)
    {
        var (first, last) = v.Store.StripeRange(offset, pieceEnd - offset);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, partition));
        var ts = await lockGrain.NextTimestampAsync(first, last, _siloAddress).ConfigureAwait(false);
        var grant = await heldLocks.AcquireAsync(
            lockGrain,
            new LockRequest(first, last, LockMode.Exclusive, _siloAddress, _options.LockLease, false))
            .ConfigureAwait(false);
        try
        {
            var firstBlock = offset / VolumeMath.BlockSizeBytes;
            var blocks = (int)((pieceEnd - offset) / VolumeMath.BlockSizeBytes);
            await lockGrain.ValidateAsync(grant.FencingToken, firstBlock, blocks, [ts.Timestamp]).ConfigureAwait(false);
            await v.Store.TrimAsync(offset, pieceEnd - offset, CancellationToken.None).ConfigureAwait(false);
            await heldLocks.CommitAsync(
                lockGrain,
                grant.FencingToken,
                [new BlockCommit(firstBlock, blocks, ts.Timestamp)],
                [ts.Timestamp],
                silo.Name,
                release: true).ConfigureAwait(false);
        }
        catch
        {
            await heldLocks.ReleaseAsync(lockGrain, grant.FencingToken).ConfigureAwait(false);
            await lockGrain.SettleAsync([ts.Timestamp]).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Drains and closes the volume's engine on this silo; the next request reopens it from its disks.
    /// </summary>
    public async Task CloseAsync(string volumeName)
    {
        if (await volumes.RemoveAsync(volumeName).ConfigureAwait(false) is not { } v) return;
        await WriteScheduler.WaitIdleAsync(v).ConfigureAwait(false);
        await v.Store.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        await v.Store.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>The volume as this silo's engine sees it.</summary>
    public async Task<VolumeStatus> StatusAsync(string volumeName, RebuildStatus? rebuild)
    {
        try
        {
            var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
            var s = v.Store;
            return new VolumeStatus(v.Info, s.Health, s.CapacityBytes, s.StripeCount, s.Members, rebuild, null);
        }
        catch (Exception ex) when (ex is not CloudRequestException)
        {
            var info = await directory.GetAsync(volumeName).ConfigureAwait(false);
            return new VolumeStatus(info, VolumeHealthState.Unavailable, 0, 0, [], rebuild, ex.Message);
        }
    }

    /// <summary>Fails a member in this silo's engine.</summary>
    public async Task FailMemberAsync(string volumeName, int index, string reason)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        CheckMember(v.Info, index);
        await v.Store.FailMemberAsync(index, reason).ConfigureAwait(false);
    }

    /// <summary>Replaces a member in this silo's engine.</summary>
    public async Task ReplaceMemberAsync(string volumeName, int index, string path)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        CheckMember(v.Info, index);
        await v.Store.ReplaceMemberAsync(index, path, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>
    /// Rebuilds here, in steps of at most <see cref="RebuildStepBytes"/> within one partition; progress goes to
    /// <paramref name="progress"/>. The other silos keep writing the volume meanwhile, and their engines write a new
    /// member only below the rebuild cursor they have read from the superblocks. So each step holds its stripes'
    /// partition lock exclusively while the engine rebuilds them and records the cursor past them (every silo
    /// re-reads it before the engine returns): no other silo writes a stripe while it is rebuilt, and none writes it
    /// afterwards without the new member. A step's stripes are rebuilt once; stripes above the cursor that other
    /// silos write meanwhile are rebuilt when their step comes.
    /// </summary>
    public async Task RebuildAsync(string volumeName, IProgress<(long Done, long Total)> progress)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        var metered = new MeteredRebuildProgress(volumeName, progress);
        var stripesPerPartition = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        var stripesPerStep = Math.Clamp(RebuildStepBytes / v.Store.StripeDataBytes, 1, stripesPerPartition);
        for (var first = v.Store.RebuildCursorStripes; first < v.Store.StripeCount;)
        {
            // A step ends at the step size or at its partition's end, whichever comes first.
            var partition = first / stripesPerPartition;
            var end = Math.Min(
                Math.Min(first + stripesPerStep, (partition + 1) * stripesPerPartition), v.Store.StripeCount);
            var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, partition));
            var grant = await heldLocks.AcquireAsync(
                lockGrain,
                new LockRequest(first, end - 1, LockMode.Exclusive, _siloAddress, _options.LockLease, false))
                .ConfigureAwait(false);
            try
            {
                await v.Store.RebuildStripesAsync(end, metered, CancellationToken.None).ConfigureAwait(false);
            }
            catch
            {
                // A step that failed part way may have written some of the new member's chunks: the plain release
                // marks the stripes uncertain, as after a failed repair.
                await heldLocks.ReleaseAsync(lockGrain, grant.FencingToken).ConfigureAwait(false);
                throw;
            }
            // A rebuild writes no new version (it puts back what the others hold), so it commits no timestamps.
            await heldLocks.CommitAsync(lockGrain, grant.FencingToken, [], [], silo.Name, release: true)
                .ConfigureAwait(false);
            first = end;
        }
        // A volume found with every member rebuilt to the end but not yet recorded active (an interrupted last step).
        if (v.Store.Members.Any(m => m.State == DiskState.Rebuilding))
            await v.Store.RebuildStripesAsync(v.Store.StripeCount, metered, CancellationToken.None)
                .ConfigureAwait(false);
    }

    /// <summary>
    /// Most data bytes one rebuild step covers under one exclusive lock: small enough that a step ends well within
    /// the lock's lease and writers wait for it briefly; large enough that the superblock update after each step
    /// (every silo re-reads it) costs little beside the step's reads and writes.
    /// </summary>
    public const long RebuildStepBytes = 16L << 20;

    /// <summary>
    /// Scrubs here, partition by partition, each stripe under the cluster's partition lock: the engine's own stripe
    /// lock excludes only this silo's writers, while every silo writes the same member disks. A stripe is checked
    /// under a shared lock, so that no writer is between its data and parity writes; one found wrong is repaired
    /// under an exclusive lock from a fresh read, since a writer may have rewritten it between the two locks and a
    /// repair from the data checked first would overwrite that writer's parity. What the fresh read finds is what
    /// counts: a stripe rewritten meanwhile is checked again, not reported.
    /// </summary>
    public async Task<ScrubResult> ScrubAsync(string volumeName, bool repair)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        var stripesPerPartition = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        var result = new ScrubResult(0, 0, 0, 0);
        for (long first = 0; first < v.Store.StripeCount; first += stripesPerPartition)
        {
            var lockGrain = grains.GetGrain<IPartitionLockGrain>(
                VolumeMath.PartitionKey(v.Info, first / stripesPerPartition));
            var last = Math.Min(v.Store.StripeCount, first + stripesPerPartition) - 1;
            for (var stripe = first; stripe <= last; stripe++)
                result = Sum(result, await ScrubStripeAsync(v, lockGrain, stripe, repair).ConfigureAwait(false));
        }
        CloudMetrics.ScrubStripes.Add(result.StripesChecked, new KeyValuePair<string, object?>("kind", "checked"));
        CloudMetrics.ScrubStripes.Add(result.Mismatches, new KeyValuePair<string, object?>("kind", "mismatch"));
        CloudMetrics.ScrubStripes.Add(
            result.ChecksumErrors, new KeyValuePair<string, object?>("kind", "checksum-error"));
        return result;
    }

    private async Task<ScrubResult> ScrubStripeAsync(
        OpenVolume v,
        IPartitionLockGrain lockGrain,
        long stripe,
        bool repair)
    {
        var shared = await heldLocks.AcquireAsync(
            lockGrain,
            new LockRequest(stripe, stripe, LockMode.Shared, _siloAddress, _options.LockLease, false))
            .ConfigureAwait(false);
        ScrubResult check;
        try
        {
            check = await v.Store.ScrubStripesAsync(
                stripe, stripe, repair: false, CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            // A reader's release: nothing waits for its reply, and a lost one ends with the lease.
            await heldLocks.ReleaseOneWayAsync(lockGrain, shared.FencingToken).ConfigureAwait(false);
        }
        if (!repair || (check.Mismatches == 0 && check.ChecksumErrors == 0)) return check;

        var exclusive = await heldLocks.AcquireAsync(
            lockGrain,
            new LockRequest(stripe, stripe, LockMode.Exclusive, _siloAddress, _options.LockLease, false))
            .ConfigureAwait(false);
        ScrubResult repaired;
        try
        {
            repaired = await v.Store.ScrubStripesAsync(
                stripe, stripe, repair: true, CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            // A repair that failed part way may have written some blocks: the plain release marks the stripe
            // uncertain, so that its next writer compares against the block timestamps on disk.
            await heldLocks.ReleaseAsync(lockGrain, exclusive.FencingToken).ConfigureAwait(false);
            throw;
        }
        // A repair puts back the versions the stripe already held (from redundancy) and recomputes parity; it writes
        // no new version, so it commits nothing and leaves the grain's committed timestamps as they are.
        await heldLocks.CommitAsync(lockGrain, exclusive.FencingToken, [], [], silo.Name, release: true).ConfigureAwait(false);
        return repaired;
    }

    private static ScrubResult Sum(ScrubResult a, ScrubResult b) =>
        new(
            a.StripesChecked + b.StripesChecked,
            a.Mismatches + b.Mismatches,
            a.ChecksumErrors + b.ChecksumErrors,
            a.Repaired + b.Repaired,
            a.Unrecoverable + b.Unrecoverable);

    private static void CheckMember(VolumeInfo v, int index)
    {
        if (index < 0 || index >= v.DiskCount)
            throw new CloudRequestException(
                $"disk index {index} is not a member of volume '{v.Name}'; use 0-{v.DiskCount - 1}");
    }

    /// <summary>
    /// Re-reads the member table of the volume <paramref name="volumeId"/> if it is open on this silo, or still
    /// opening: an open that read the superblocks before the change would otherwise keep the older table (a rebuild
    /// cursor behind the one the rebuilding silo relies on). A volume not open here has nothing to refresh: it is
    /// assembled from the superblocks when it is next used.
    /// </summary>
    internal async Task RefreshMembersAsync(Guid volumeId, RefreshMode mode)
    {
        if (mode == RefreshMode.Skip) return;
        foreach (var opening in volumes.OpenedOrOpening)
        {
            var refresh = RefreshOneAsync(opening);
            if (mode == RefreshMode.Now) await refresh.ConfigureAwait(false);
        }

        async Task RefreshOneAsync(Task<OpenVolume> opening)
        {
            OpenVolume v;
            try { v = await opening.ConfigureAwait(false); }
            catch (Exception) { return; /* a failed open leaves nothing behind: the next one reads the superblocks */ }
            if (v.Store.VolumeId != volumeId) return;
            try { await v.Store.RefreshMembersAsync(CancellationToken.None).ConfigureAwait(false); }
            catch (ObjectDisposedException) { /* closed meanwhile: the next open reads the superblocks anyway */ }
            catch (Exception ex) when (mode == RefreshMode.Background) { LogRefreshFailed(logger, v.Info.Name, ex); }
        }
    }

    /// <summary>
    /// Resyncs every volume's stripes that a dead silo's intent slot marks as possibly mid-update. The marked stripes
    /// (a few regions: the dead silo's writes in flight) are locked exclusively first, partition by partition in
    /// partition order (the order every writer uses), all of them before the resync, so that no live writer
    /// read-modify-writes a stripe whose parity may be stale; the rest of the volume keeps serving meanwhile.
    /// </summary>
    public async Task<long> RecoverWriterSlotAsync(int writerSlot)
    {
        long total = 0;
        foreach (var info in await grains.GetGrain<IVolumeCatalogGrain>(0).ListAsync().ConfigureAwait(false))
        {
            // A volume of another host's files is not opened here (only its host's silos reach it); its intent slots
            // are resynced when a silo of that host assembles it again.
            if (!VolumeReach.Reaches(info, _options.HostName)) continue;
            var v = await volumes.OpenAsync(info.Name).ConfigureAwait(false);
            // The dead writer writes no more, so its marks do not change between this read and the resync.
            var marked = await v.Store.MarkedStripesOfSlotAsync(writerSlot, CancellationToken.None)
                .ConfigureAwait(false);
            if (marked.Count == 0) continue;
            var held = new List<(IPartitionLockGrain Grain, long Token)>();
            try
            {
                await LockStripesAsync(v, marked, held).ConfigureAwait(false);
                var resynced = await v.Store.RecoverWriterSlotAsync(
                    writerSlot, CancellationToken.None).ConfigureAwait(false);
                LogSlotRecovered(logger, info.Name, writerSlot, resynced);
                total += resynced;
            }
            finally
            {
                foreach (var (lockGrain, token) in held)
                {
                    try { await heldLocks.ReleaseAsync(lockGrain, token).ConfigureAwait(false); }
                    catch (Exception ex) { LogRefreshFailed(logger, info.Name, ex); }
                }
            }
        }
        return total;
    }

    /// <summary>
    /// Takes exclusive locks on the stripe ranges <paramref name="marked"/> (end exclusive), split at partition
    /// boundaries and taken in partition order, adding each grant to <paramref name="held"/>.
    /// </summary>
    private async Task LockStripesAsync(
        OpenVolume v,
        IReadOnlyList<(long First, long End)> marked,
        List<(IPartitionLockGrain Grain, long Token)> held)
    {
        var stripesPerPartition = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        var pieces = new List<(long Partition, long First, long Last)>();
        foreach (var (first, end) in marked)
        {
            for (var s = first; s < end;)
            {
                var partition = s / stripesPerPartition;
                var pieceEnd = Math.Min(end, (partition + 1) * stripesPerPartition);
                pieces.Add((partition, s, pieceEnd - 1));
                s = pieceEnd;
            }
        }
        foreach (var (partition, first, last) in pieces.OrderBy(p => p.Partition).ThenBy(p => p.First))
        {
            var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, partition));
            var grant = await heldLocks.AcquireAsync(
                lockGrain,
                new LockRequest(first, last, LockMode.Exclusive, _siloAddress, _options.LockLease, false))
                .ConfigureAwait(false);
            held.Add((lockGrain, grant.FencingToken));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: re-reading the superblocks or releasing a lock failed")]
    private static partial void LogRefreshFailed(ILogger logger, string volume, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: dead silo's intent slot {Slot} recovered, {Stripes} stripes resynced")]
    private static partial void LogSlotRecovered(ILogger logger, string volume, int slot, long stripes);
}

/// <summary>Passes rebuild progress on and publishes it as the <c>cloud.rebuild.progress</c> gauge.</summary>
internal sealed class MeteredRebuildProgress(
    string volumeName,
    IProgress<(long Done, long Total)> inner) : IProgress<(long Done, long Total)>
{
    public void Report((long Done, long Total) value)
    {
        CloudMetrics.ReportRebuild(volumeName, value.Done, value.Total);
        inner.Report(value);
    }
}
