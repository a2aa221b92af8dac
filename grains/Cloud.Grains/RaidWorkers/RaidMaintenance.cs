using System.Diagnostics;
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
    WriterSlotRecovery slotRecovery,
    Disks.HostDisks hostDisks,
    VersionsInFlight inFlight,
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
        var partitionKey = VolumeMath.PartitionKey(v.Info, partition);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(partitionKey);
        var ts = await lockGrain.NextTimestampAsync(first, last, _siloAddress).ConfigureAwait(false);
        inFlight.Begin(partitionKey, ts.Timestamp);
        try
        {
            await TrimUnderAsync(v, lockGrain, ts, first, last, offset, pieceEnd).ConfigureAwait(false);
        }
        finally
        {
            inFlight.End(partitionKey, ts.Timestamp);
        }
    }

    private async Task TrimUnderAsync(
        OpenVolume v,
        IPartitionLockGrain lockGrain,
        TimestampGrant ts,
        long first,
        long last,
        long offset,
        long pieceEnd)
    {
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
    public Task CloseAsync(string volumeName) => volumes.CloseAsync(volumeName, static async v =>
    {
        await WriteScheduler.WaitIdleAsync(v).ConfigureAwait(false);
        await v.RecoveryAfterOpen.ConfigureAwait(false);
        await v.Store.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        await v.Store.DisposeAsync().ConfigureAwait(false);
    });

    /// <summary>
    /// Longest a status waits for the volume to open on this silo (a first open after a host died may wait for that
    /// host's members; <see cref="Disks.HostDisks.OpenRetryBound"/>); past it the status says so, and the open goes on.
    /// Well below the 30 s response timeout, so that `volume show` answers instead of timing out.
    /// </summary>
    internal TimeSpan StatusOpenWait { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The volume as this silo's engine sees it.</summary>
    public async Task<VolumeStatus> StatusAsync(string volumeName, RebuildStatus? rebuild)
    {
        var opening = volumes.OpenAsync(volumeName);
        try
        {
            var v = await opening.WaitAsync(StatusOpenWait).ConfigureAwait(false);
            var s = v.Store;
            return new VolumeStatus(
                v.Info, s.Health, s.CapacityBytes, s.StripeCount, s.Members, rebuild, null, s.KeepsPartialParityLog);
        }
        catch (Exception ex) when (ex is not CloudRequestException)
        {
            var info = await directory.GetAsync(volumeName).ConfigureAwait(false);
            var message = opening.IsCompleted
                ? ex.Message
                : $"volume '{volumeName}' is still opening on silo {silo.Name} after {StatusOpenWait.TotalSeconds:0} s (a host of its members may have just failed); ask again in a moment";
            return new VolumeStatus(info, VolumeHealthState.Unavailable, 0, 0, [], rebuild, message);
        }
    }

    /// <summary>Fails a member in this silo's engine.</summary>
    public async Task FailMemberAsync(string volumeName, int index, string reason)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        CheckMember(v.Info, index);
        await v.Store.FailMemberAsync(index, reason).ConfigureAwait(false);
    }

    /// <summary>
    /// Replaces a member in this silo's engine; a new member on another <paramref name="host"/> is made there by its
    /// disk service (<see cref="Disks.HostDisks"/>), and deleted again when the engine refuses it.
    /// </summary>
    public async Task ReplaceMemberAsync(string volumeName, int index, string path, string? host = null)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        CheckMember(v.Info, index);
        var remote = hostDisks.IsRemote(host)
            ? await CreateRemoteMemberAsync(v, index, path, host!).ConfigureAwait(false)
            : null;
        try
        {
            await v.Store.ReplaceMemberAsync(index, path, remote, CancellationToken.None).ConfigureAwait(false);
        }
        catch (CloudRequestException) when (remote is not null)
        {
            await hostDisks.DeleteAsync(host!, path).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Makes member <paramref name="index"/>'s new file at <paramref name="path"/> on <paramref name="host"/>,
    /// as large as the volume's other members.</summary>
    private async Task<Cloud.Storage.Devices.IBlockDevice> CreateRemoteMemberAsync(
        OpenVolume v,
        int index,
        string path,
        string host)
    {
        var sizeBytes = v.Store.MemberBytesNeeded;
        var next = v.Info with
        {
            DiskPaths = v.Info.DiskPaths.SetItem(index, path),
            MemberHosts = (v.Info.MemberHosts.IsDefaultOrEmpty
                ? [.. Enumerable.Repeat("", v.Info.DiskCount)]
                : v.Info.MemberHosts).SetItem(index, host),
        };
        return (await hostDisks.CreateRemoteAsync(next, index, sizeBytes, CancellationToken.None).ConfigureAwait(false))!;
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
    public async Task RebuildAsync(string volumeName, IProgress<(long Done, long Total, long BytesMoved)> progress)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        // A stripe left mid-update by a crash is resynced first: rebuilt from its stale parity, the new member would
        // hold a chunk that agrees with neither version.
        await v.RecoveryAfterOpen.ConfigureAwait(false);
        var metered = new MeteredRebuildProgress(
            volumeName,
            v.Store.RebuildBytesMoved,
            v.Store.Members.Any(m => m.State == DiskState.Resyncing) ? "catch-up" : "rebuild",
            progress);
        var stripesPerPartition = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        var stripesPerStep = Math.Clamp(RebuildStepBytes / v.Store.StripeDataBytes, 1, stripesPerPartition);
        for (var first = v.Store.RebuildCursorStripes; first < v.Store.StripeCount;)
        {
            // A step ends at the step size or at its partition's end, whichever comes first.
            var partition = first / stripesPerPartition;
            var end = Math.Min(
                Math.Min(first + stripesPerStep, (partition + 1) * stripesPerPartition), v.Store.StripeCount);
            var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, partition));
            await RebuildStepAsync(v, lockGrain, first, end, metered).ConfigureAwait(false);
            first = end;
        }
        // A volume found with every member rebuilt to the end but not yet recorded active (an interrupted last step).
        if (v.Store.Members.Any(m => m.State is DiskState.Rebuilding or DiskState.Resyncing))
            await v.Store.RebuildStripesAsync(v.Store.StripeCount, metered, CancellationToken.None)
                .ConfigureAwait(false);
    }

    /// <summary>
    /// One rebuild step: stripes <paramref name="first"/> to <paramref name="end"/> (exclusive) of one partition,
    /// rebuilt and published under the partition's exclusive lock, which is renewed while the step runs: publishing
    /// waits for every silo to re-read the superblocks, which may outlast a lease on a loaded machine, and a lease
    /// that lapsed would let writers into stripes the step has rebuilt before they know the new cursor.
    /// </summary>
    private async Task RebuildStepAsync(
        OpenVolume v,
        IPartitionLockGrain lockGrain,
        long first,
        long end,
        IProgress<(long Done, long Total, long BytesMoved)> progress)
    {
        var started = Stopwatch.GetTimestamp();
        var grant = await heldLocks.AcquireAsync(
            lockGrain,
            new LockRequest(first, end - 1, LockMode.Exclusive, _siloAddress, _options.LockLease, false))
            .ConfigureAwait(false);
        using var stepDone = new CancellationTokenSource();
        var renewing = HeldLocks.RenewUntilCancelledAsync(lockGrain, grant.FencingToken, _options.LockLease, stepDone.Token);
        try
        {
            await v.Store.RebuildStripesAsync(end, progress, CancellationToken.None).ConfigureAwait(false);
            await stepDone.CancelAsync().ConfigureAwait(false);
            // A renewal refused means the lease lapsed at some point of the step: other silos may have written its
            // stripes meanwhile, without the new member. Fail the rebuild rather than record it as done.
            await renewing.ConfigureAwait(false);
        }
        catch
        {
            await stepDone.CancelAsync().ConfigureAwait(false);
            // A step that failed part way may have written some of the new member's chunks: the plain release marks
            // the stripes uncertain, as after a failed repair.
            await heldLocks.ReleaseAsync(lockGrain, grant.FencingToken).ConfigureAwait(false);
            throw;
        }
        // A rebuild writes no new version (it puts back what the others hold), so it commits no timestamps.
        await heldLocks.CommitAsync(lockGrain, grant.FencingToken, [], [], silo.Name, release: true)
            .ConfigureAwait(false);
        LogRebuildStep(logger, v.Info.Name, first, end, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
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
        // A stripe left mid-update by a crash is not a mismatch to report (or to repair from its data) while its
        // write-hole recovery is still to come.
        await v.RecoveryAfterOpen.ConfigureAwait(false);
        var stripesPerPartition = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        var result = new ScrubResult(0, 0, 0, 0);
        var marks = new IntentMarks(v);
        for (long first = 0; first < v.Store.StripeCount; first += stripesPerPartition)
        {
            var lockGrain = grains.GetGrain<IPartitionLockGrain>(
                VolumeMath.PartitionKey(v.Info, first / stripesPerPartition));
            var last = Math.Min(v.Store.StripeCount, first + stripesPerPartition) - 1;
            for (var stripe = first; stripe <= last; stripe++)
                result = Sum(result, await ScrubStripeAsync(v, lockGrain, stripe, repair, marks).ConfigureAwait(false));
        }
        CloudMetrics.ScrubStripes.Add(result.StripesChecked, new KeyValuePair<string, object?>("kind", "checked"));
        CloudMetrics.ScrubStripes.Add(result.Mismatches, new KeyValuePair<string, object?>("kind", "mismatch"));
        CloudMetrics.ScrubStripes.Add(
            result.ChecksumErrors, new KeyValuePair<string, object?>("kind", "checksum-error"));
        return result;
    }

    /// <summary>
    /// The stripes any intent slot of a volume marks, read once, when a scrub first needs them (a mismatch is rare, and
    /// reading every slot of every member is 64 small reads per member).
    /// </summary>
    private sealed class IntentMarks(OpenVolume v)
    {
        private List<(long First, long End)>? _marked;

        public async Task<bool> IsMarkedAsync(long stripe)
        {
            if (_marked is null)
            {
                var marked = new List<(long First, long End)>();
                for (var slot = 0; slot < Cloud.Storage.Format.OnDiskFormat.IntentSlotCount; slot++)
                    marked.AddRange(await v.Store.MarkedStripesOfSlotAsync(slot, CancellationToken.None).ConfigureAwait(false));
                _marked = marked;
            }
            return _marked.Exists(m => stripe >= m.First && stripe < m.End);
        }
    }

    private async Task<ScrubResult> ScrubStripeAsync(
        OpenVolume v,
        IPartitionLockGrain lockGrain,
        long stripe,
        bool repair,
        IntentMarks marks)
    {
        var shared = await LockStripeAsync(lockGrain, stripe, LockMode.Shared).ConfigureAwait(false);
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
        // Parity that disagrees with data whose checksums all hold, in a stripe an intent slot marks: a write cut short
        // by a crash, whose slot's recovery has not reached it yet (after every silo was killed, each silo recovers its
        // slot when it first opens the volume, and this scrub may run ahead of another silo's). Not a finding: the
        // stripe is resynced now, from its data, as that recovery would, and checked again.
        if (check.Mismatches > 0 && check.ChecksumErrors == 0 && await marks.IsMarkedAsync(stripe).ConfigureAwait(false))
            return await ResyncMidUpdateStripeAsync(v, lockGrain, stripe).ConfigureAwait(false);
        if (check.Mismatches > 0 || check.ChecksumErrors > 0)
            LogScrubFound(logger, v.Info.Name, stripe, check.Mismatches > 0, check.ChecksumErrors, repair);
        if (!repair || (check.Mismatches == 0 && check.ChecksumErrors == 0)) return check;

        return await UnderExclusiveLockAsync(
            lockGrain,
            stripe,
            () => v.Store.ScrubStripesAsync(stripe, stripe, repair: true, CancellationToken.None)).ConfigureAwait(false);
    }

    /// <summary>
    /// Resyncs a stripe left mid-update by a crash under its exclusive lock, then checks it again under the same lock;
    /// the check's result is the scrub's for the stripe.
    /// </summary>
    private async Task<ScrubResult> ResyncMidUpdateStripeAsync(OpenVolume v, IPartitionLockGrain lockGrain, long stripe)
    {
        var check = await UnderExclusiveLockAsync(lockGrain, stripe, async () =>
        {
            await v.Store.ResyncStripesAsync(stripe, stripe + 1, CancellationToken.None).ConfigureAwait(false);
            return await v.Store.ScrubStripesAsync(stripe, stripe, repair: false, CancellationToken.None)
                .ConfigureAwait(false);
        }).ConfigureAwait(false);
        LogMidUpdateResynced(logger, v.Info.Name, stripe, check.Mismatches == 0 && check.ChecksumErrors == 0);
        return check;
    }

    /// <summary>
    /// Runs a repair or resync of one stripe under its exclusive lock. Either puts back versions the stripe already
    /// held (from redundancy, or its data as it is) and recomputes parity; neither writes a new version, so a success
    /// commits nothing and leaves the grain's committed timestamps as they are. A failure part way may have written
    /// some blocks: the plain release marks the stripe uncertain, so that its next writer compares against the block
    /// timestamps on disk.
    /// </summary>
    private async Task<ScrubResult> UnderExclusiveLockAsync(
        IPartitionLockGrain lockGrain,
        long stripe,
        Func<ValueTask<ScrubResult>> work)
    {
        var exclusive = await LockStripeAsync(lockGrain, stripe, LockMode.Exclusive).ConfigureAwait(false);
        ScrubResult result;
        try
        {
            result = await work().ConfigureAwait(false);
        }
        catch
        {
            await heldLocks.ReleaseAsync(lockGrain, exclusive.FencingToken).ConfigureAwait(false);
            throw;
        }
        await heldLocks.CommitAsync(lockGrain, exclusive.FencingToken, [], [], silo.Name, release: true).ConfigureAwait(false);
        return result;
    }

    [LoggerMessage(
        Level = LogLevel.Information,
        Message = "Volume {Volume}: scrub found stripe {Stripe} left mid-update by a crash (its intent slot still marks it) and resynced it from its data, as the slot's recovery would; consistent now: {Consistent}")]
    private static partial void LogMidUpdateResynced(ILogger logger, string volume, long stripe, bool consistent);

    /// <summary>One stripe's cluster lock, for a scrub's check, repair or resync of it.</summary>
    private Task<LockGrant> LockStripeAsync(IPartitionLockGrain lockGrain, long stripe, LockMode mode) =>
        heldLocks.AcquireAsync(
            lockGrain, new LockRequest(stripe, stripe, mode, _siloAddress, _options.LockLease, false));

    private static ScrubResult Sum(ScrubResult a, ScrubResult b) =>
        new(
            a.StripesChecked + b.StripesChecked,
            a.Mismatches + b.Mismatches,
            a.ChecksumErrors + b.ChecksumErrors,
            a.Repaired + b.Repaired,
            a.Unrecoverable + b.Unrecoverable);

    [LoggerMessage(
        Level = LogLevel.Warning,
        Message = "Volume {Volume}: scrub found stripe {Stripe} wrong (parity disagrees with data: {Mismatch}; {ChecksumErrors} blocks with a bad checksum); repairing: {Repair}")]
    private static partial void LogScrubFound(
        ILogger logger, string volume, long stripe, bool mismatch, long checksumErrors, bool repair);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Volume {Volume}: rebuild step of stripes {First}-{End} locked, rebuilt and published in {Milliseconds} ms")]
    private static partial void LogRebuildStep(ILogger logger, string volume, long first, long end, double milliseconds);

    private static void CheckMember(VolumeInfo v, int index)
    {
        if (index < 0 || index >= v.DiskCount)
            throw new CloudRequestException(
                $"disk index {index} is not a member of volume '{v.Name}'; use 0-{v.DiskCount - 1}");
    }

    /// <summary>
    /// Re-reads the member table of the volume <paramref name="volumeId"/> in every engine of it on this silo that
    /// serves I/O: open, or closing but still writing the copies it had queued; an engine still opening re-reads it
    /// before its open completes (<see cref="OpenVolumeCache.BeginRefresh"/>). A volume not open here has nothing to
    /// refresh: it is assembled from the superblocks when it is next used. Returns once each of them has re-read: the
    /// silo that published the change relies on it.
    /// </summary>
    internal Task RefreshMembersAsync(Guid volumeId)
    {
        return Task.WhenAll(volumes.BeginRefresh().Where(v => v.Store.VolumeId == volumeId).Select(RefreshOneAsync));

        static async Task RefreshOneAsync(OpenVolume v)
        {
            try { await v.Store.RefreshMembersAsync(CancellationToken.None).ConfigureAwait(false); }
            catch (ObjectDisposedException) { /* closed meanwhile: it writes no more */ }
        }
    }

    /// <summary>
    /// A silo died: every volume open here reads the partial-parity rings again before its next reconstruction of a
    /// stripe with members missing (the dead silo's last entries may be newer than this silo's reading of them).
    /// </summary>
    public void ForgetPartialParityIndexes()
    {
        foreach (var v in volumes.Opened) v.Store.ForgetPartialParityIndex();
    }

    /// <summary>
    /// Resyncs every volume's stripes that a dead silo's intent slot marks as possibly mid-update, under their
    /// partition locks (<see cref="WriterSlotRecovery"/>); the rest of the volume keeps serving meanwhile. A volume's
    /// recovery ends early when <paramref name="standDown"/> says so for it.
    /// </summary>
    public async Task<long> RecoverWriterSlotAsync(int writerSlot, Func<string, Task<bool>>? standDown = null)
    {
        long total = 0;
        foreach (var info in await grains.GetGrain<IVolumeCatalogGrain>(0).ListAsync().ConfigureAwait(false))
        {
            // A volume of another host's files is not opened here (only its host's silos reach it); its intent slots
            // are resynced when a silo of that host opens it again.
            if (!VolumeReach.Reaches(info, _options.HostName)) continue;
            var v = await volumes.OpenAsync(info.Name).ConfigureAwait(false);
            var name = info.Name;
            total += await slotRecovery.RecoverAsync(
                v, writerSlot, standDown is null ? null : () => standDown(name)).ConfigureAwait(false);
        }
        return total;
    }
}

/// <summary>
/// Passes rebuild progress on, with the bytes moved counted from <paramref name="baselineBytes"/> (the engine's count
/// when this rebuild began), and publishes it as the <c>cloud.rebuild.progress</c> gauge and the
/// <c>cloud.rebuild.bytes</c> counter (tag <c>kind</c>: <paramref name="kind"/>).
/// </summary>
internal sealed class MeteredRebuildProgress(
    string volumeName,
    long baselineBytes,
    string kind,
    IProgress<(long Done, long Total, long BytesMoved)> inner) : IProgress<(long Done, long Total, long BytesMoved)>
{
    private long _reportedBytes;

    public void Report((long Done, long Total, long BytesMoved) value)
    {
        var moved = value.BytesMoved - baselineBytes;
        var delta = moved - Interlocked.Exchange(ref _reportedBytes, moved);
        if (delta > 0) CloudMetrics.RebuildBytes.Add(delta, new KeyValuePair<string, object?>("kind", kind));
        CloudMetrics.ReportRebuild(volumeName, value.Done, value.Total);
        inner.Report(value with { BytesMoved = moved });
    }
}
