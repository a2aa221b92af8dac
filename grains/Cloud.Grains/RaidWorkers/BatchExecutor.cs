using System.Buffers;
using System.Collections.Immutable;
using System.Diagnostics;
using Cloud.Grains.Delegation;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// Writes one batch of replicated copies (patent claims 46 and 51): takes the stripes' exclusive lock from the
/// partition-lock grain, validates the copies' timestamps, lets the engine read the prior data and parity, compute
/// the new parity and write both, and commits the new timestamps to the partition-lock grain, releasing the lock.
/// </summary>
public sealed partial class BatchExecutor(
    GrainReferences<IPartitionLockGrain> lockGrains,
    ILocalSiloDetails silo,
    SiloUsage usage,
    HeldLocks heldLocks,
    WriteLeases writeLeases,
    IOptions<CloudOptions> options,
    ILogger<BatchExecutor> logger)
{
    /// <summary>
    /// Pause before retrying a batch whose lock was fenced (doubled per attempt, up to 64 times this): the copies may
    /// be acknowledged already, so a fenced batch is retried until <see cref="CloudOptions.RedelegationTimeout"/>, not
    /// a fixed number of times, and a busy partition must not be hammered meanwhile.
    /// </summary>
    public static readonly TimeSpan FencedRetryPause = TimeSpan.FromMilliseconds(20);

    private const int BlockBytes = VolumeMath.BlockSizeBytes;
    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>
    /// Writes the batch's winning blocks under the partition's lock; returns, per copy, whether any of its blocks was
    /// written (false: superseded by a newer committed version).
    /// </summary>
    /// <param name="origins">
    /// The spans that handed each copy in (default where none): the batch's span is a child of the first and links the
    /// others, so that it sits in the trace of the write that started it and is found from the others.
    /// </param>
    public async Task<bool[]> WriteBatchAsync(
        OpenVolume v,
        IReadOnlyList<ReplicatedWrite> copies,
        long partition,
        long firstStripe,
        long lastStripe,
        IReadOnlyList<ActivityContext>? origins = null)
    {
        using var activity = StartBatchActivity(origins);
        activity?.SetTag("cloud.volume", v.Info.Name);
        activity?.SetTag("cloud.partition", partition);
        activity?.SetTag("cloud.copies", copies.Count);
        activity?.SetTag("cloud.silo", silo.Name);
        var blocksPerStripe = (int)(v.Store.StripeDataBytes / BlockBytes);
        var firstBlock = firstStripe * blocksPerStripe;
        var count = (int)(Math.Min((lastStripe + 1) * blocksPerStripe, v.Info.SizeBytes / BlockBytes) - firstBlock);
        var partitionKey = VolumeMath.PartitionKey(v.Info, partition);
        var lockGrain = lockGrains.Get(partitionKey);
        var timestamps = copies.Select(c => c.Timestamp).ToImmutableArray();
        var request = new LockRequest(
            firstStripe, lastStripe, LockMode.Exclusive, _siloAddress, _options.LockLease, false);
        var started = Stopwatch.GetTimestamp();
        bool MayRetry() => Stopwatch.GetElapsedTime(started) < _options.RedelegationTimeout;
        for (var attempt = 0; ; attempt++)
        {
            if (attempt > 0)
                await Task.Delay(FencedRetryPause * (1 << Math.Min(attempt - 1, 6))).ConfigureAwait(false);
            // Every copy timestamped under this silo's write lease: lock, validate and commit here, with no grain call.
            if (_options.WriteLeases
                && await writeLeases.TryLockForWriteAsync(
                    partitionKey, firstStripe, lastStripe, firstBlock, count, timestamps).ConfigureAwait(false)
                    is { } local)
            {
                var committed = false;
                try
                {
                    var (commits, wrote) = await WriteWinnersAsync(
                        v.Store, copies, local.Grant, () => writeLeases.FreshAsync(local.Hold), firstBlock, count)
                        .ConfigureAwait(false);
                    WriteLeases.Commit(local.Hold, commits, timestamps);
                    committed = true;
                    return wrote;
                }
                catch (LockFencedException ex) when (MayRetry())
                {
                    LogFenced(logger, v.Info.Name, ex.FencingToken, ex.Message);
                    continue;
                }
                finally
                {
                    if (!committed) WriteLeases.Release(local.Hold);
                }
            }
            // The partition-lock grain may be moving off a dead silo: wait for it rather than fail the copies.
            // One call takes the lock and validates the batch against the grain's committed timestamps.
            WriteLockGrant writeGrant;
            using (CloudTracing.Source.StartActivity(CloudTracing.LockAcquire))
            {
                writeGrant = await SiloFailures.RetryAsync(
                    () => heldLocks.AcquireForWriteAsync(
                        lockGrain, request, firstBlock, count, timestamps), _options.RedelegationTimeout).ConfigureAwait(false);
            }
            var token = writeGrant.Grant.FencingToken;
            var released = false;
            // Renewed in the background while the batch runs, not only at its checkpoints: on a loaded machine one
            // disk write can outlast half a lease, and a lease that ran out fences the batch, which then redoes every
            // disk write it made; that extra load slowed the next batches past their leases too.
            var lease = new BatchLease(lockGrain, writeGrant.Grant, _options.LockLease);
            try
            {
                var (commits, wrote) = await WriteWinnersAsync(
                    v.Store, copies, writeGrant, lease.FreshAsync, firstBlock, count).ConfigureAwait(false);
                await lease.FreshAsync().ConfigureAwait(false);
                using (CloudTracing.Source.StartActivity(CloudTracing.LockCommit))
                {
                    await heldLocks.CommitAsync(lockGrain, token, commits, timestamps, silo.Name, release: true)
                        .ConfigureAwait(false);
                }
                released = true;
                return wrote;
            }
            catch (LockFencedException ex) when (MayRetry())
            {
                LogFenced(logger, v.Info.Name, ex.FencingToken, ex.Message);
            }
            catch (Exception ex) when (SiloFailures.IsSiloFailure(ex) && MayRetry())
            {
                // The lock grain died with our lease; a new activation knows no holders, so take the lock again.
                LogFenced(logger, v.Info.Name, token, $"{ex.GetType().Name}: {ex.Message}");
            }
            finally
            {
                lease.Stop();
                if (!released)
                {
                    try { await heldLocks.ReleaseAsync(lockGrain, token).ConfigureAwait(false); }
                    catch (Exception releaseEx)
                    {
                        LogReleaseFailed(logger, v.Info.Name, firstStripe, lastStripe, releaseEx);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Validates the copies against the newest committed versions and writes the winning runs; returns the commits.
    /// </summary>
    private async Task<(ImmutableArray<BlockCommit> Commits, bool[] Wrote)> WriteWinnersAsync(
        IVolumeStore store,
        IReadOnlyList<ReplicatedWrite> copies,
        WriteLockGrant writeGrant,
        Func<Task<LockGrant>> fresh,
        long firstBlock,
        int count)
    {
        // The partition-lock grain's knowledge and, unless the grain proves its knowledge complete for these blocks,
        // the engine's per-block timestamps on disk, which survive the grain's reactivation elsewhere and a writer that
        // died before its commit; a version older than either is superseded. A block on a missing member has no
        // timestamp of its own on disk, and its row's parity timestamp is no evidence against it: that bound comes
        // from any block of the row, and taken for the block's own it dropped acknowledged re-sent copies that were
        // never written (a RAID-6 with its two killed hosts holding the blocks; MissingBlockTimestampTests). Such a
        // block is judged by the grain's committed timestamps alone (docs/ARCHITECTURE.md, "Known limits").
        var newest = new long[count];
        if (writeGrant.DiskCheckNeeded)
            await store.ReadBlockTimestampsAsync(
                firstBlock * BlockBytes, newest, CancellationToken.None).ConfigureAwait(false);
        var committed = writeGrant.Validation.CommittedTimestamps;
        for (var i = 0; i < count; i++) newest[i] = Math.Max(newest[i], committed[i]);
        var extents = new BatchCopy[copies.Count];
        for (var c = 0; c < extents.Length; c++)
        {
            var w = copies[c];
            extents[c] = new BatchCopy(
                w.OffsetBytes / BlockBytes, w.Data.Length / BlockBytes, w.Timestamp, w.ForceUnitAccess);
        }
        var plan = WinningBlocks.Choose(extents, firstBlock, newest, writeGrant.Validation.MergeSafe);
        var commits = ImmutableArray.CreateBuilder<BlockCommit>(plan.Runs.Length);
        foreach (var run in plan.Runs)
        {
            var grant = await fresh().ConfigureAwait(false);
            await WriteRunAsync(store, copies, plan.Winners, run, firstBlock, grant).ConfigureAwait(false);
            commits.Add(new BlockCommit(firstBlock + run.Start, run.BlockCount, run.Timestamp));
        }
        return (commits.MoveToImmutable(), plan.Wrote);
    }

    private async Task WriteRunAsync(
        IVolumeStore store,
        IReadOnlyList<ReplicatedWrite> copies,
        int[] winners,
        WinningRun run,
        long firstBlock,
        LockGrant grant)
    {
        var runBytes = run.BlockCount * BlockBytes;
        var offsetBytes = (firstBlock + run.Start) * BlockBytes;
        // A run from one copy (every write of a batch of one, e.g. a sequential 1 MiB write) goes to the engine
        // straight
        // from that copy; only a run merged from several copies is assembled in a buffer.
        var buffer = run.OnlyCopy >= 0 ? null : ArrayPool<byte>.Shared.Rent(runBytes);
        try
        {
            ReadOnlyMemory<byte> source;
            if (buffer is null)
            {
                var w = copies[run.OnlyCopy];
                source = w.Data.AsMemory((int)(offsetBytes - w.OffsetBytes), runBytes);
            }
            else
            {
                for (var k = 0; k < run.BlockCount; k++)
                {
                    var w = copies[winners[run.Start + k]];
                    var from = (int)(offsetBytes + k * BlockBytes - w.OffsetBytes);
                    w.Data.AsSpan(from, BlockBytes).CopyTo(buffer.AsSpan(k * BlockBytes, BlockBytes));
                }
                source = buffer.AsMemory(0, runBytes);
            }
            // The fence is checked just before the disk write: a holder whose lease ended must not write.
            if (grant.ExpiresUtc < DateTimeOffset.UtcNow)
                throw new LockFencedException(grant.FencingToken, "local lease expired");
            var started = Stopwatch.GetTimestamp();
            using (var engine = CloudTracing.Source.StartActivity(CloudTracing.EngineWrite))
            {
                engine?.SetTag("cloud.offset", offsetBytes);
                engine?.SetTag("cloud.bytes", runBytes);
                await store.WriteAsync(
                    offsetBytes, source, run.Timestamp, run.ForceUnitAccess, CancellationToken.None).ConfigureAwait(false);
            }
            usage.ObserveWrite(Stopwatch.GetElapsedTime(started), runBytes);
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Starts the batch's span under the first copy's origin, linking the other copies' origins. The schedule runs a
    /// batch on whatever flow pumped it (often an earlier, unrelated batch's), so the ambient activity is dropped first:
    /// a batch whose copies came in untraced starts a trace of its own rather than joining a stranger's.
    /// </summary>
    private static Activity? StartBatchActivity(IReadOnlyList<ActivityContext>? origins)
    {
        Activity.Current = null;
        if (!CloudTracing.Source.HasListeners()) return null;
        var traced = origins?.Where(o => o != default).Distinct().ToList() ?? [];
        var parent = traced.Count > 0 ? traced[0] : default;
        var links = traced.Skip(1).Select(o => new ActivityLink(o));
        return CloudTracing.Source.StartActivity(CloudTracing.RaidBatch, ActivityKind.Internal, parent, links: links);
    }

    /// <summary>
    /// A batch's lease, renewed before each disk write and the commit once less than half of it remains: a batch on a
    /// busy machine or slow disks may outlast one lease, and letting it lapse would fence the batch and write it again
    /// for nothing. A renewal the grain refuses (the lease already ended there) fences the batch, as it should.
    /// </summary>
    /// <remarks>
    /// Besides the checkpoints, a keep-alive asks every quarter lease (<see cref="FreshAsync"/> renews only once less
    /// than half remains), so a single slow disk write does not outlast the lease. A keep-alive that fails leaves the
    /// verdict to the next checkpoint, whose renewal the grain then refuses.
    /// </remarks>
    private sealed class BatchLease
    {
        private readonly IPartitionLockGrain _lockGrain;
        private readonly TimeSpan _length;
        private readonly SemaphoreSlim _renewing = new(1, 1);
        private readonly CancellationTokenSource _stop = new();
        private LockGrant _grant;

        public BatchLease(IPartitionLockGrain lockGrain, LockGrant grant, TimeSpan length)
        {
            _lockGrain = lockGrain;
            _length = length;
            _grant = grant;
            _ = KeepAliveAsync();
        }

        public async Task<LockGrant> FreshAsync()
        {
            // One renewal at a time: the keep-alive and a checkpoint must not both renew one token.
            await _renewing.WaitAsync().ConfigureAwait(false);
            try
            {
                if (_grant.ExpiresUtc - DateTimeOffset.UtcNow < _length / 2)
                    _grant = await _lockGrain.RenewAsync(_grant.FencingToken, _length).ConfigureAwait(false);
                return _grant;
            }
            finally { _renewing.Release(); }
        }

        private async Task KeepAliveAsync()
        {
            try
            {
                while (true)
                {
                    await Task.Delay(_length / 4, _stop.Token).ConfigureAwait(false);
                    await FreshAsync().ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
            catch (Exception)
            {
                // Refused or unreachable: the batch's next checkpoint renews again and fences the batch if refused.
            }
        }

        /// <summary>
        /// Ends the keep-alive without waiting for a renewal in flight (it may wait for a busy grain): the batch's
        /// commit or release, which follows, ends the lease anyway.
        /// </summary>
        public void Stop() => _stop.Cancel();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: releasing the lock of stripes {First}-{Last} failed")]
    private static partial void LogReleaseFailed(
        ILogger logger,
        string volume,
        long first,
        long last,
        Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: lock token {Token} was fenced ({Reason}); retrying the batch")]
    private static partial void LogFenced(ILogger logger, string volume, long token, string reason);
}
