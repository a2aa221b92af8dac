using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Cloud.Storage.Volumes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.FirstServers;

/// <summary>
/// The first server's side of a delegated write, one per silo: it assigns the timestamp, chooses the target (the
/// last synchronization target while appropriate, else a new one by load), sends the replicated copy, keeps its own
/// copy until the target reports the commit, and re-delegates when the target dies.
/// </summary>
public sealed partial class FirstServerWrites(
    IGrainFactory grains,
    GrainReferences<IPartitionLockGrain> lockGrains,
    GrainReferences<IDelegationGrain> units,
    VolumeDirectory directory,
    LoadTable loadTable,
    SiloUsage usage,
    SiloRuntimeSettings settings,
    ILocalSiloDetails silo,
    WriteScheduler localWorker,
    WriteLeases writeLeases,
    VersionsInFlight inFlight,
    IOptions<CloudOptions> options,
    ILogger<FirstServerWrites> logger)
{
    /// <summary>
    /// How long one commit poll waits at the target before asking again (well under the response timeout).
    /// </summary>
    public static readonly TimeSpan CommitPollWait = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Times a copy is re-sent to a unit that is moving before the first server gives up on that unit.
    /// </summary>
    public const int MaxMoveRetries = 16;

    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();
    private readonly ConcurrentDictionary<Guid, Held> _held = new();

    /// <summary>
    /// A copy this silo holds until its target commits it. <see cref="Reported"/> is set once the copy's version was
    /// reported to a reactivated partition-lock grain, which then keeps it pending until this silo settles it.
    /// </summary>
    private sealed class Held(
        ReplicatedWrite write,
        Task<WriteReport> completion,
        string partitionKey,
        long firstStripe,
        long lastStripe)
    {
        private int _reported;

        public ReplicatedWrite Write => write;
        public Task<WriteReport> Completion => completion;
        public string PartitionKey => partitionKey;
        public HeldVersion Version => new(write.Timestamp, firstStripe, lastStripe);
        public bool Reported => Volatile.Read(ref _reported) == 1;

        /// <summary>Marks the copy reported; a full fence, so it is ordered before the caller's next read.</summary>
        public void MarkReported() => Interlocked.Exchange(ref _reported, 1);
    }

    /// <summary>Copies held here and not yet committed (for status and tests).</summary>
    public int HeldCopies => _held.Count;

    /// <summary>
    /// Writes block-aligned data: split per partition, each piece timestamped and delegated. Returns once every piece
    /// is replicated, or committed for FUA and durable volumes.
    /// </summary>
    /// <param name="recycle">
    /// Nothing but this call references <paramref name="data"/> (a payload the NBD server gave up): when it is sent
    /// as one piece and that piece commits, the array goes back to <see cref="PayloadPool.Shared"/>. Only a commit
    /// proves that no copy in this silo (held here, or queued at the local RAID worker) still needs it; after any other
    /// outcome the array is left to the garbage collector.
    /// </param>
    public async Task WriteAsync(
        string volumeName,
        long offsetBytes,
        byte[] data,
        bool forceUnitAccess,
        bool recycle = false)
    {
        using var activity = CloudTracing.Source.StartActivity(CloudTracing.FirstServerWrite);
        activity?.SetTag("cloud.volume", volumeName);
        activity?.SetTag("cloud.offset", offsetBytes);
        activity?.SetTag("cloud.bytes", data.Length);
        activity?.SetTag("cloud.silo", silo.Name);
        var v = await directory.GetAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v, offsetBytes, data.Length);
        if (data.Length > _options.MaxRequestBytes)
            throw new CloudRequestException(
                $"write of {data.Length} bytes exceeds the limit of {_options.MaxRequestBytes}; split it");
        var waitForDisk = forceUnitAccess || v.Durable;
        var stripe = VolumeMath.StripeDataBytes(v);
        var partitionBytes = VolumeMath.StripesPerPartition(v, _options.PartitionTargetBytes) * stripe;
        var pieces = new List<Task<Task<WriteReport>>>();
        for (long offset = offsetBytes, end = offsetBytes + data.Length; offset < end;)
        {
            var partition = offset / partitionBytes;
            var pieceEnd = Math.Min(end, (partition + 1) * partitionBytes);
            var whole = offset == offsetBytes && pieceEnd == end;
            var piece = whole ? data : data.AsSpan((int)(offset - offsetBytes), (int)(pieceEnd - offset)).ToArray();
            pieces.Add(DelegateAsync(v, partition, offset, piece, forceUnitAccess || v.Durable, recycle && whole));
            offset = pieceEnd;
        }
        var completions = await Task.WhenAll(pieces).ConfigureAwait(false);
        if (!waitForDisk) return;
        foreach (var report in await Task.WhenAll(completions).ConfigureAwait(false))
        {
            if (report.Outcome == WriteOutcome.Failed)
                throw new CloudRequestException(
                    $"write to volume '{volumeName}' failed on silo {report.Silo}: {report.Error}");
        }
    }

    /// <summary>
    /// Delegates whole blocks of one partition under a timestamp the caller already took from that partition's lock
    /// grain (a sub-block write takes it before it reads the block it patches; see <see cref="SectorWrites"/>).
    /// Returns the copy's completion, as each piece of <see cref="WriteAsync"/> does.
    /// </summary>
    internal Task<Task<WriteReport>> DelegateTimestampedAsync(
        VolumeInfo v,
        long partition,
        long offsetBytes,
        byte[] data,
        bool fua,
        TimestampGrant timestamp) =>
        DelegateAsync(v, partition, offsetBytes, data, fua, recycle: false, timestamp);

    private async Task<Task<WriteReport>> DelegateAsync(
        VolumeInfo v,
        long partition,
        long offsetBytes,
        byte[] data,
        bool fua,
        bool recycle,
        TimestampGrant? timestamp = null)
    {
        // The commit poll (FollowAsync) starts inside this span and so stays in the write's trace after it ends.
        using var activity = CloudTracing.Source.StartActivity(CloudTracing.Delegate);
        activity?.SetTag("cloud.volume", v.Name);
        activity?.SetTag("cloud.partition", partition);
        var stripe = VolumeMath.StripeDataBytes(v);
        var firstStripe = offsetBytes / stripe;
        var lastStripe = (offsetBytes + data.Length - 1) / stripe;
        var partitionKey = VolumeMath.PartitionKey(v, partition);
        var lockGrain = lockGrains.Get(partitionKey);
        var grant = timestamp ?? await NextTimestampAsync(lockGrain, partitionKey, firstStripe, lastStripe)
            .ConfigureAwait(false);
        // The version is this silo's until its follow ends (a sector write's edge began it already): see
        // VersionsInFlight. Whatever fails here fails before the follow starts or after it ended.
        if (timestamp is null) inFlight.Begin(partitionKey, grant.Timestamp);
        try
        {
            return await DelegateUnderAsync(
                v, lockGrain, partitionKey, offsetBytes, firstStripe, lastStripe, data, fua, recycle, grant, activity)
                .ConfigureAwait(false);
        }
        catch
        {
            inFlight.End(partitionKey, grant.Timestamp);
            throw;
        }
    }

    private async Task<Task<WriteReport>> DelegateUnderAsync(
        VolumeInfo v,
        IPartitionLockGrain lockGrain,
        string partitionKey,
        long offsetBytes,
        long firstStripe,
        long lastStripe,
        byte[] data,
        bool fua,
        bool recycle,
        TimestampGrant grant,
        Activity? activity)
    {
        var write = new ReplicatedWrite(WriteIds.Next(), v.Name, offsetBytes, data, grant.Timestamp, fua, silo.Name);
        var unit = units.Get(partitionKey);
        DelegationReceipt receipt;
        try
        {
            receipt = await HandOverAsync(v, unit, write, grant, activity).ConfigureAwait(false);
        }
        catch
        {
            // No target took the copy, whether choosing one failed (a placement refused, say the volume's host had no
            // live silo for a moment), the first send did or a resend after a silo failure did: the version will never
            // commit, and reads of these stripes must not wait for it until the lock grain gives up on it.
            await SettleAsync(partitionKey, write.Timestamp).ConfigureAwait(false);
            throw;
        }
        activity?.SetTag("cloud.target", receipt.TargetSilo);
        if (receipt.TargetSilo != grant.ActiveTarget)
        {
            // The target holds the copy already: a lock grain moving off a silo that just died must not fail the
            // write now, so ask it again as the timestamp was asked.
            await SiloFailures.RetryAsync(
                () => lockGrain.SetTargetAsync(receipt.TargetSilo), _options.RedelegationTimeout).ConfigureAwait(false);
            // The previous target may hold older scheduled versions of these blocks: tell it to cancel them.
            if (grant.ActiveTarget is { } previous && grant.TargetHoldsPendingCopy)
                _ = CancelOlderAsync(previous, write);
        }
        // Held before the follow starts: a copy that committed already (during the awaits above) makes FollowAsync run
        // to its end at once, and its removal of the entry must come after this addition, not before it.
        var followed = new TaskCompletionSource<WriteReport>(TaskCreationOptions.RunContinuationsAsynchronously);
        _held[write.WriteId] = new Held(write, followed.Task, partitionKey, firstStripe, lastStripe);
        // Unless FUA or kept by this silo's own worker (both wait for the commit below or in WriteAsync), the client
        // has its acknowledgement once this returns.
        var completion = FollowAsync(
            write, partitionKey, receipt.TargetSilo, acknowledged: !fua && receipt.TargetSilo != silo.Name);
        _ = AfterFollowAsync(completion, followed, recycle ? data : null);
        if (receipt.TargetSilo == silo.Name && !fua)
        {
            // This silo is its own target: the "replicated" copy and ours are one, in one process. Acknowledging now
            // would lose the write if this silo died before the disk write, so wait for the commit first.
            var report = await completion.ConfigureAwait(false);
            if (report.Outcome == WriteOutcome.Failed)
                throw new CloudRequestException(
                    $"write to volume '{v.Name}' failed on silo {report.Silo}: {report.Error}");
        }
        return completion;
    }

    /// <summary>
    /// Chooses the copy's target (the unit's last one while appropriate, else a new one by load) and hands the copy
    /// to it; returns once a target took it.
    /// </summary>
    private async Task<DelegationReceipt> HandOverAsync(
        VolumeInfo v,
        IDelegationGrain unit,
        ReplicatedWrite write,
        TimestampGrant grant,
        Activity? activity)
    {
        var requiredHost = VolumeReach.RequiredHost(v);
        // Stickiness: keep the unit's last synchronization target while it is alive, not draining and not overloaded.
        string decision, reason;
        if (grant.ActiveTarget is null) { decision = "new"; reason = "no-target"; }
        else if (settings.FixedDelegationTarget is { } fixedTarget)
        {
            decision = grant.ActiveTarget == fixedTarget ? "reused" : "new";
            reason = "fixed-target";
            if (decision == "new") await unit.RelocateAsync().ConfigureAwait(false);
        }
        else if (loadTable.IsAppropriateTarget(grant.ActiveTarget, requiredHost, out reason)) decision = "reused";
        else
        {
            decision = "new";
            try { await unit.RelocateAsync().ConfigureAwait(false); }
            catch (Exception ex)
                when (SiloFailures.IsSiloFailure(ex)) { /* already gone: Orleans re-places it on the next call */ }
        }
        CloudMetrics.DelegationDecisions.Add(1, new("decision", decision), new("reason", reason));
        activity?.SetTag("cloud.decision", decision);
        activity?.SetTag("cloud.reason", reason);
        usage.Decision(decision == "reused");

        try
        {
            // The unit's target is this silo and stays so: hand the copy to the local RAID worker in process, as the
            // unit's activation here would, without the message to it. Placement matters only when the target changes.
            return decision == "reused" && grant.ActiveTarget == silo.Name && settings.FixedDelegationTarget is null
                ? await EngineErrors.Guard(() => localWorker.AcceptAsync(write, runHere: true)).ConfigureAwait(false)
                : await AcceptAsync(unit, write).ConfigureAwait(false);
        }
        catch (Exception ex) when (SiloFailures.IsSiloFailure(ex))
        {
            return await SendWithRetriesAsync(unit, write).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The write's timestamp: from this silo's write lease on the partition when it holds one (no grain call), else
    /// from the partition-lock grain. A silo that finds itself the partition's target asks for a lease.
    /// </summary>
    private async Task<TimestampGrant> NextTimestampAsync(
        IPartitionLockGrain lockGrain,
        string partitionKey,
        long firstStripe,
        long lastStripe)
    {
        var leases = _options.WriteLeases
            && (settings.FixedDelegationTarget is null || settings.FixedDelegationTarget == silo.Name);
        if (leases)
        {
            // While a lease is asked for, this silo's new writes wait: the grain gives it once the writes in flight end.
            await writeLeases.WaitForAskingAsync(partitionKey).ConfigureAwait(false);
            if (writeLeases.TryTimestamp(partitionKey, firstStripe, lastStripe, out var leased))
                return new TimestampGrant(leased, silo.Name, TargetHoldsPendingCopy: false);
        }
        var grant = await SiloFailures.RetryAsync(
            () => lockGrain.NextTimestampAsync(firstStripe, lastStripe, _siloAddress),
            _options.RedelegationTimeout).ConfigureAwait(false);
        if (leases && grant.ActiveTarget == silo.Name) writeLeases.Want(partitionKey);
        return grant;
    }

    /// <summary>
    /// Passes the follow's outcome to the held entry's task, and returns a recycled write's array to the payload pool
    /// once its copy committed: by then the copy held here is dropped (<see cref="FollowAsync"/> ends by removing it)
    /// and the RAID worker that wrote it has finished with it (a copy sent to another silo is that silo's own array).
    /// </summary>
    private static async Task AfterFollowAsync(
        Task<WriteReport> completion,
        TaskCompletionSource<WriteReport> held,
        byte[]? recycle)
    {
        WriteReport report;
        try
        {
            report = await completion.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            held.TrySetException(e);
            return;
        }
        held.TrySetResult(report);
        if (recycle is not null && report.Outcome == WriteOutcome.Committed) PayloadPool.Shared.Return(recycle);
    }

    private async Task CancelOlderAsync(string previousTarget, ReplicatedWrite newer)
    {
        try
        {
            await grains.GetGrain<IRaidWorkerGrain>(previousTarget)
                .CancelSupersededAsync(
                    newer.VolumeName, newer.OffsetBytes, newer.Data.Length, newer.Timestamp).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // Best effort: an uncancelled older copy is still dropped as superseded when it validates.
            LogCancelFailed(logger, previousTarget, ex);
        }
    }

    /// <summary>
    /// Waits for the target's commit, re-delegating if it dies, then drops this silo's copy. An
    /// <paramref name="acknowledged"/> copy may be the only one left of a write the client was told is done: when its
    /// target fails it (say the target could not open the volume while two hosts had just died) or refuses a resend,
    /// it is sent again, after a growing pause, until the re-delegation timeout; only then is it given up, and its
    /// version settled here (the target leaves the version of a copy it failed pending for this resend).
    /// </summary>
    private async Task<WriteReport> FollowAsync(ReplicatedWrite write, string unitKey, string target, bool acknowledged)
    {
        var deadline = DateTimeOffset.UtcNow + _options.RedelegationTimeout;
        var pause = TimeSpan.Zero;
        string? following = target;
        var gaveUp = false;
        try
        {
            while (true)
            {
                if (following is not null)
                {
                    var (final, failed) = await WaitForCommitAsync(write, following, acknowledged).ConfigureAwait(false);
                    if (final is not null) return final;
                    if (failed) pause = NextPause(pause);
                }
                if (DateTimeOffset.UtcNow > deadline)
                {
                    gaveUp = acknowledged;
                    return new WriteReport(
                        WriteOutcome.Failed,
                        following ?? target,
                        $"no silo committed the write within {_options.RedelegationTimeout}");
                }
                if (pause > TimeSpan.Zero) await Task.Delay(pause).ConfigureAwait(false);
                // Marked re-sent: unless FUA, the client had its acknowledgement long ago, and the new target runs
                // the copies clients wait for first.
                write = write with { Redelegated = true };
                following = await ResendAsync(write, unitKey, acknowledged, deadline).ConfigureAwait(false);
                if (following is null) pause = NextPause(pause);
            }
        }
        catch
        {
            // A resend no target took: the version would otherwise stay pending until the lock grain gives up on it.
            gaveUp = true;
            throw;
        }
        finally
        {
            // Removed before the flag is read, while ReportHeld sets the flag before it looks for the entry: either
            // the report saw the entry and this settles the version it reported, or the report did not include it.
            // A copy given up is settled too: its target left the version pending for this silo to resend.
            if (_held.TryRemove(write.WriteId, out var held) && (held.Reported || gaveUp))
                _ = SettleAsync(unitKey, write.Timestamp);
            inFlight.End(unitKey, write.Timestamp);
        }
    }

    /// <summary>
    /// Waits until <paramref name="following"/> is done with the copy. Returns its final report, or none when the copy
    /// must be sent again: the target restarted, lost the copy or died, or (<c>Failed</c>, and the resend waits a
    /// growing pause) it failed an <paramref name="acknowledged"/> copy.
    /// </summary>
    private async Task<(WriteReport? Final, bool Failed)> WaitForCommitAsync(
        ReplicatedWrite write, string following, bool acknowledged)
    {
        try
        {
            while (true)
            {
                // A copy delegated to this silo itself is waited for in process: the worker grain would only forward
                // the call to this same service, at the cost of a message per write.
                var report = following == silo.Name
                    ? await localWorker.WaitAsync(write.WriteId, CommitPollWait).ConfigureAwait(false)
                    : await grains.GetGrain<IRaidWorkerGrain>(following).WaitCommittedAsync(
                        write.WriteId, CommitPollWait).ConfigureAwait(false);
                switch (report.Outcome)
                {
                    case WriteOutcome.Pending:
                        continue;
                    case WriteOutcome.Unknown:
                        return (null, false);
                    case WriteOutcome.Failed when acknowledged:
                        LogCopyFailed(logger, write.WriteId, following, report.Error);
                        return (null, true);
                    default:
                        return (report, false);
                }
            }
        }
        catch (Exception ex) when (SiloFailures.IsSiloFailure(ex))
        {
            LogRedelegating(logger, write.WriteId, following, ex.GetType().Name);
            return (null, false);
        }
    }

    /// <summary>
    /// Sends the copy to its unit again and returns the silo that took it, or null when an
    /// <paramref name="acknowledged"/> copy's resend was refused before the deadline (it is tried again after a pause).
    /// </summary>
    private async Task<string?> ResendAsync(
        ReplicatedWrite write, string unitKey, bool acknowledged, DateTimeOffset deadline)
    {
        CloudMetrics.Redelegations.Add(1);
        try
        {
            return (await SendWithRetriesAsync(units.Get(unitKey), write).ConfigureAwait(false)).TargetSilo;
        }
        catch (Exception ex) when (acknowledged && DateTimeOffset.UtcNow < deadline)
        {
            LogResendRefused(logger, write.WriteId, ex.GetType().Name, ex.Message);
            return null;
        }
    }

    /// <summary>The pause before resending a copy its target failed: 250 ms, doubling up to 2 s.</summary>
    private static TimeSpan NextPause(TimeSpan pause) =>
        pause == TimeSpan.Zero
            ? TimeSpan.FromMilliseconds(250)
            : TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));

    /// <summary>
    /// The versions of partition <paramref name="partitionKey"/> this silo holds uncommitted, for its partition-lock
    /// grain reactivating after its silo died: the grain lost its pending versions, and a read that did not wait for
    /// these would miss writes already acknowledged. Each reported version is settled by this silo once its copy's
    /// follow ends (committed or given up), whichever activation its commit reached.
    /// </summary>
    public ImmutableArray<HeldVersion> ReportHeld(string partitionKey)
    {
        var versions = ImmutableArray.CreateBuilder<HeldVersion>();
        foreach (var (id, held) in _held)
        {
            if (held.PartitionKey != partitionKey) continue;
            held.MarkReported();
            if (_held.ContainsKey(id)) versions.Add(held.Version);
        }
        return versions.ToImmutable();
    }

    /// <summary>Ends a pending version in its lock grain, retrying while that grain's silo fails; logs a failure.</summary>
    private async Task SettleAsync(string partitionKey, long timestamp)
    {
        try
        {
            await SiloFailures.RetryAsync(
                () => writeLeases.SettleAsync(partitionKey, [timestamp]), _options.RedelegationTimeout)
                .ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // The grain ends a pending version by itself after the re-delegation timeout; until then reads of these
            // stripes wait, which is slow but never wrong.
            LogSettleFailed(logger, partitionKey, timestamp, ex);
        }
    }

    /// <summary>
    /// Sends the copy to the unit until it takes it: until membership declares a dead silo dead, calls to the unit
    /// fail; then Orleans places it anew.
    /// </summary>
    private Task<DelegationReceipt> SendWithRetriesAsync(IDelegationGrain unit, ReplicatedWrite write) =>
        SiloFailures.RetryAsync(() => AcceptAsync(unit, write), _options.RedelegationTimeout);

    /// <summary>Sends the copy to the unit, again while the unit's activation is moving away.</summary>
    private static async Task<DelegationReceipt> AcceptAsync(IDelegationGrain unit, ReplicatedWrite write)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return await unit.AcceptAsync(write).ConfigureAwait(false);
            }
            catch (DelegationMovedException) when (attempt < MaxMoveRetries)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(5 << Math.Min(attempt, 6))).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Waits until every copy this silo holds for the volume is committed.</summary>
    public async Task DrainAsync(string volumeName)
    {
        var pending = _held.Values.Where(h => h.Write.VolumeName == volumeName).Select(h => h.Completion).ToList();
        var reports = await Task.WhenAll(pending).ConfigureAwait(false);
        foreach (var report in reports)
        {
            if (report.Outcome == WriteOutcome.Failed)
                throw new CloudRequestException(
                    $"an earlier write to volume '{volumeName}' failed on silo {report.Silo}: {report.Error}");
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Write {WriteId}: target {Target} failed ({Error}); re-delegating")]
    private static partial void LogRedelegating(ILogger logger, Guid writeId, string target, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Write {WriteId}: target {Target} failed the copy ({Error}); sending it again")]
    private static partial void LogCopyFailed(ILogger logger, Guid writeId, string target, string? error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Write {WriteId}: resend refused ({Kind}: {Error}); sending it again")]
    private static partial void LogResendRefused(ILogger logger, Guid writeId, string kind, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Partition {Partition}: settling version {Timestamp} failed")]
    private static partial void LogSettleFailed(ILogger logger, string partition, long timestamp, Exception exception);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Cancelling older versions on {Target} failed")]
    private static partial void LogCancelFailed(ILogger logger, string target, Exception exception);
}
