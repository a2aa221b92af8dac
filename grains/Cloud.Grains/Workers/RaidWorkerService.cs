using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Cloud.Grains.Load;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.Workers;

/// <summary>
/// The software RAID driver of one silo. The RAID worker grain is its Orleans face; the work runs here on the thread
/// pool, off the grain's single-threaded scheduler, so parity and copies of many stripes proceed in parallel.
/// </summary>
/// <remarks>
/// A delegated write (patent claims 46, 48, 51): receive the replicated copy, schedule it, take the stripe lock from
/// the partition-lock grain, validate the copy's timestamp, let the engine read the prior data and parity, compute
/// the new parity and write both, update the partition-lock grain with the new timestamp, release.
/// </remarks>
public sealed partial class RaidWorkerService(
    IVolumeStoreFactory factory,
    VolumeDirectory directory,
    IGrainFactory grains,
    ILocalSiloDetails silo,
    SiloUsage usage,
    SiloRuntimeSettings settings,
    IOptions<CloudOptions> options,
    ILogger<RaidWorkerService> logger) : IAsyncDisposable
{
    /// <summary>Batches of one volume running at once on this silo.</summary>
    public const int MaxConcurrentBatches = 16;

    /// <summary>Copies merged into one batch at most.</summary>
    public const int MaxBatchCopies = 64;

    /// <summary>Times a batch is retried after its lock was fenced before its copies fail.</summary>
    public const int MaxFencedRetries = 8;

    /// <summary>Reports of finished copies kept for the first servers that have not asked yet.</summary>
    public const int MaxRetainedReports = 100_000;

    private readonly CloudOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, Lazy<Task<VolumeRuntime>>> _volumes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Guid, Ticket> _tickets = new();
    private readonly ConcurrentQueue<Guid> _finished = new();
    private readonly SemaphoreSlim _spaceFreed = new(0);
    private long _queuedBytes;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>This silo's stable name.</summary>
    public string SiloName => silo.Name;

    private sealed class Ticket(ReplicatedWrite write, long firstStripe, long lastStripe, long partition)
    {
        /// <summary>The copy; its data is dropped once the copy is finished (the ticket outlives it for late pollers).</summary>
        public ReplicatedWrite Write { get; private set; } = write;

        /// <summary>Lets the copy's data go: a finished ticket is kept only for its report.</summary>
        public void DropData() => Write = Write with { Data = [] };

        public long FirstStripe { get; } = firstStripe;
        public long LastStripe { get; } = lastStripe;
        public long Partition { get; } = partition;
        public bool Running { get; set; }
        public TaskCompletionSource<WriteReport> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class VolumeRuntime(VolumeInfo info, IVolumeStore store)
    {
        public VolumeInfo Info { get; } = info;
        public IVolumeStore Store { get; } = store;
        public object Gate { get; } = new();
        public List<Ticket> Queue { get; } = [];
        public List<(long First, long Last)> Running { get; } = [];
        public int RunningBatches { get; set; }
        public TaskCompletionSource Idle { get; set; } = CompletedIdle();
        public static TaskCompletionSource CompletedIdle() { var t = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously); t.SetResult(); return t; }
    }

    private async Task<VolumeRuntime> OpenAsync(string volumeName)
    {
        var lazy = _volumes.GetOrAdd(volumeName, name => new Lazy<Task<VolumeRuntime>>(async () =>
        {
            var info = await directory.GetAsync(name).ConfigureAwait(false);
            var store = await factory.OpenAsync(info, CancellationToken.None).ConfigureAwait(false);
            if (store.StripeDataBytes != VolumeMath.StripeDataBytes(info))
                throw new InvalidOperationException($"volume '{name}': engine stripe of {store.StripeDataBytes} bytes disagrees with the catalog's {VolumeMath.StripeDataBytes(info)}");
            store = new LatencyInjectingStore(store, () => settings.InjectedDiskLatency);
            return new VolumeRuntime(info, store);
        }));
        try
        {
            return await lazy.Value.ConfigureAwait(false);
        }
        catch
        {
            // A failed open (e.g. a missing disk file) must not stick: the next request tries again.
            _volumes.TryRemove(new KeyValuePair<string, Lazy<Task<VolumeRuntime>>>(volumeName, lazy));
            throw;
        }
    }

    /// <summary>Takes a replicated copy into the schedule; returns once it is held here.</summary>
    public async Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write)
    {
        if (_tickets.TryGetValue(write.WriteId, out var known) && !known.Done.Task.IsCompleted)
            return new DelegationReceipt(SiloName, true);
        var v = await OpenAsync(write.VolumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v.Info, write.OffsetBytes, write.Data.Length);
        var (first, last) = v.Store.StripeRange(write.OffsetBytes, write.Data.Length);
        var spp = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        if (first / spp != last / spp)
            throw new CloudRequestException($"write {write.OffsetBytes}+{write.Data.Length} spans two partitions; the first server splits writes per partition");
        // Bounded memory: wait for room unless the queue is empty (a single copy larger than the bound still runs).
        while (Interlocked.Read(ref _queuedBytes) > 0 && Interlocked.Read(ref _queuedBytes) + write.Data.Length > _options.MaxQueuedBytes)
            await _spaceFreed.WaitAsync(TimeSpan.FromMilliseconds(50)).ConfigureAwait(false);
        var ticket = new Ticket(write, first, last, first / spp);
        _tickets[write.WriteId] = ticket;
        Interlocked.Add(ref _queuedBytes, write.Data.Length);
        usage.Enqueued(write.Data.Length);
        lock (v.Gate)
        {
            v.Queue.Add(ticket);
            if (v.Idle.Task.IsCompleted) v.Idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        if (_options.MergeWindow > TimeSpan.Zero)
            _ = Task.Delay(_options.MergeWindow).ContinueWith(_ => Pump(v), TaskScheduler.Default);
        else
            Pump(v);
        return new DelegationReceipt(SiloName, true);
    }

    /// <summary>Waits for a copy's fate.</summary>
    public async Task<WriteReport> WaitAsync(Guid writeId, TimeSpan maxWait)
    {
        if (!_tickets.TryGetValue(writeId, out var ticket)) return new WriteReport(WriteOutcome.Unknown, SiloName, null);
        var done = ticket.Done.Task;
        if (done.IsCompleted) return await done.ConfigureAwait(false);
        try
        {
            // WaitAsync disposes its timer when the copy finishes first; a bare Task.Delay would leave one timer
            // alive for the whole poll period per write.
            return await done.WaitAsync(maxWait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return new WriteReport(WriteOutcome.Pending, SiloName, null);
        }
    }

    /// <summary>Drops queued (not yet running) copies wholly covered by a newer version.</summary>
    public async Task<int> CancelSupersededAsync(string volumeName, long offsetBytes, long lengthBytes, long newerTimestamp)
    {
        if (!_volumes.TryGetValue(volumeName, out var lazy) || !lazy.IsValueCreated || !lazy.Value.IsCompletedSuccessfully) return 0;
        var v = await lazy.Value.ConfigureAwait(false);
        List<Ticket> cancelled = [];
        lock (v.Gate)
        {
            for (var i = v.Queue.Count - 1; i >= 0; i--)
            {
                var t = v.Queue[i];
                if (!t.Running && t.Write.Timestamp < newerTimestamp && t.Write.OffsetBytes >= offsetBytes
                    && t.Write.OffsetBytes + t.Write.Data.Length <= offsetBytes + lengthBytes)
                {
                    v.Queue.RemoveAt(i);
                    cancelled.Add(t);
                }
            }
            if (v.Queue.Count == 0 && v.RunningBatches == 0) v.Idle.TrySetResult();
        }
        if (cancelled.Count == 0) return 0;
        foreach (var group in cancelled.GroupBy(t => t.Partition))
        {
            var key = VolumeMath.PartitionKey(v.Info, group.Key);
            await grains.GetGrain<IPartitionLockGrain>(key).SettleAsync([.. group.Select(t => t.Write.Timestamp)]).ConfigureAwait(false);
        }
        foreach (var t in cancelled) Finish(t, new WriteReport(WriteOutcome.Cancelled, SiloName, null));
        return cancelled.Count;
    }

    private void Finish(Ticket t, WriteReport report)
    {
        if (!t.Done.TrySetResult(report)) return;
        var bytes = t.Write.Data.Length;
        // Up to MaxRetainedReports finished tickets stay for first servers that have not asked yet: holding their
        // data too would keep gigabytes of written copies alive (and every new copy a fresh large-object allocation).
        t.DropData();
        Interlocked.Add(ref _queuedBytes, -bytes);
        usage.Dequeued(bytes);
        _spaceFreed.Release();
        CloudMetrics.WriteOutcomes.Add(1, new KeyValuePair<string, object?>("outcome", report.Outcome.ToString().ToLowerInvariant()));
        _finished.Enqueue(t.Write.WriteId);
        while (_finished.Count > MaxRetainedReports && _finished.TryDequeue(out var old)) _tickets.TryRemove(old, out _);
    }

    /// <summary>Starts every batch that can run: its stripes overlap no running batch, and the concurrency bound allows.</summary>
    private void Pump(VolumeRuntime v)
    {
        while (true)
        {
            List<Ticket>? batch = null;
            lock (v.Gate)
            {
                if (v.RunningBatches >= MaxConcurrentBatches) return;
                foreach (var head in v.Queue)
                {
                    if (head.Running || v.Running.Exists(r => r.First <= head.LastStripe && head.FirstStripe <= r.Last)) continue;
                    batch = [head];
                    long first = head.FirstStripe, last = head.LastStripe;
                    // Merge every queued copy of the same partition that overlaps the batch's stripes.
                    var grown = true;
                    while (grown && batch.Count < MaxBatchCopies)
                    {
                        grown = false;
                        foreach (var t in v.Queue)
                        {
                            if (t.Running || batch.Contains(t) || t.Partition != head.Partition || batch.Count >= MaxBatchCopies) continue;
                            if (t.FirstStripe <= last && first <= t.LastStripe && !v.Running.Exists(r => r.First <= t.LastStripe && t.FirstStripe <= r.Last))
                            {
                                batch.Add(t);
                                first = Math.Min(first, t.FirstStripe);
                                last = Math.Max(last, t.LastStripe);
                                grown = true;
                            }
                        }
                    }
                    foreach (var t in batch) t.Running = true;
                    v.Running.Add((first, last));
                    v.RunningBatches++;
                    break;
                }
            }
            if (batch is null) return;
            _ = Task.Run(() => RunBatchAsync(v, batch));
        }
    }

    private async Task RunBatchAsync(VolumeRuntime v, List<Ticket> batch)
    {
        long first = batch.Min(t => t.FirstStripe), last = batch.Max(t => t.LastStripe);
        try
        {
            // A partition-lock grain on a silo that just died fails every call until membership declares that silo
            // dead and the grain is activated elsewhere. The copies may be the only ones left (their first server may
            // have died with it), so keep trying rather than drop writes that were already acknowledged.
            var deadline = DateTimeOffset.UtcNow + _options.RedelegationTimeout;
            var delay = FirstServer.FirstRetryDelay;
            while (true)
            {
                try
                {
                    await PerformAsync(v, batch, first, last).ConfigureAwait(false);
                    break;
                }
                catch (Exception ex) when (IsSiloFailure(ex) && DateTimeOffset.UtcNow < deadline)
                {
                    LogBatchRetry(logger, v.Info.Name, first, last, ex.GetType().Name);
                    await Task.Delay(delay).ConfigureAwait(false);
                    delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, FirstServer.MaxRetryDelay.Ticks));
                }
            }
        }
        catch (Exception ex)
        {
            LogBatchFailed(logger, v.Info.Name, first, last, ex);
            var key = VolumeMath.PartitionKey(v.Info, batch[0].Partition);
            try { await grains.GetGrain<IPartitionLockGrain>(key).SettleAsync([.. batch.Select(t => t.Write.Timestamp)]).ConfigureAwait(false); }
            catch (Exception settleEx) { LogBatchFailed(logger, v.Info.Name, first, last, settleEx); }
            foreach (var t in batch) Finish(t, new WriteReport(WriteOutcome.Failed, SiloName, ex.Message));
        }
        finally
        {
            lock (v.Gate)
            {
                foreach (var t in batch) v.Queue.Remove(t);
                v.Running.Remove((first, last));
                v.RunningBatches--;
                if (v.Queue.Count == 0 && v.RunningBatches == 0) v.Idle.TrySetResult();
            }
            Pump(v);
        }
    }

    private async Task PerformAsync(VolumeRuntime v, List<Ticket> batch, long firstStripe, long lastStripe)
    {
        var store = v.Store;
        var blockBytes = VolumeMath.BlockSizeBytes;
        var blocksPerStripe = (int)(store.StripeDataBytes / blockBytes);
        var firstBlock = firstStripe * blocksPerStripe;
        var endBlock = Math.Min((lastStripe + 1) * blocksPerStripe, v.Info.SizeBytes / blockBytes);
        var count = (int)(endBlock - firstBlock);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, batch[0].Partition));
        var timestamps = batch.Select(t => t.Write.Timestamp).ToImmutableArray();
        for (var attempt = 0; ; attempt++)
        {
            // The partition-lock grain may be moving off a dead silo: wait for it rather than fail the copies.
            // One call takes the lock and validates the batch against the grain's committed timestamps.
            var writeGrant = await FirstServer.RetryOnSiloFailureAsync(
                () => lockGrain.AcquireForWriteMeteredAsync(new LockRequest(firstStripe, lastStripe, LockMode.Exclusive, _siloAddress, _options.LockLease, false), firstBlock, count, timestamps),
                _options.RedelegationTimeout).ConfigureAwait(false);
            var grant = writeGrant.Grant;
            var released = false;
            try
            {
                // Validate: the partition-lock grain's knowledge and, unless the grain proves its knowledge complete for
                // these blocks, the engine's per-block timestamps on disk, which survive the grain's reactivation
                // elsewhere and a writer that died before its commit; a version older than either is superseded.
                var validation = writeGrant.Validation;
                var onDisk = new long[count];
                if (writeGrant.DiskCheckNeeded)
                    await store.ReadBlockTimestampsAsync(firstBlock * blockBytes, onDisk, CancellationToken.None).ConfigureAwait(false);
                var winner = new Ticket?[count];
                for (var i = 0; i < count; i++) onDisk[i] = Math.Max(onDisk[i], validation.CommittedTimestamps[i]);
                foreach (var t in batch)
                {
                    var b0 = (int)(t.Write.OffsetBytes / blockBytes - firstBlock);
                    var n = t.Write.Data.Length / blockBytes;
                    for (var i = b0; i < b0 + n; i++)
                        // ">=": a block already stamped with this very version may be one a killed target left half
                        // written (its metadata landed, its data did not); writing the same version again is idempotent.
                        if (t.Write.Timestamp >= onDisk[i] && (winner[i] is null || winner[i]!.Write.Timestamp < t.Write.Timestamp))
                            winner[i] = t;
                }
                var commits = ImmutableArray.CreateBuilder<BlockCommit>();
                var fua = false;
                for (var i = 0; i < count;)
                {
                    if (winner[i] is null) { i++; continue; }
                    // A run of winning blocks: merged under its newest timestamp when no older version elsewhere is
                    // pending on these stripes; otherwise one run per version so each block keeps its own timestamp.
                    var j = i + 1;
                    while (j < count && winner[j] is not null && (validation.MergeSafe || winner[j]!.Write.Timestamp == winner[i]!.Write.Timestamp)) j++;
                    var runBytes = (j - i) * blockBytes;
                    var only = winner[i]!;
                    var single = true;
                    for (var k = i + 1; k < j && single; k++) single = winner[k] == only;
                    // A run from one copy (every write of a batch of one, e.g. a sequential 1 MiB write) goes to the
                    // engine straight from that copy; only a run merged from several copies is assembled in a buffer.
                    var buffer = single ? null : ArrayPool<byte>.Shared.Rent(runBytes);
                    try
                    {
                        long label = 0;
                        ReadOnlyMemory<byte> source;
                        if (buffer is null)
                        {
                            var w = only.Write;
                            source = w.Data.AsMemory((int)((firstBlock + i) * blockBytes - w.OffsetBytes), runBytes);
                            label = w.Timestamp;
                            fua |= w.ForceUnitAccess;
                        }
                        else
                        {
                            for (var k = i; k < j; k++)
                            {
                                var w = winner[k]!.Write;
                                var src = (int)((firstBlock + k) * blockBytes - w.OffsetBytes);
                                w.Data.AsSpan(src, blockBytes).CopyTo(buffer.AsSpan((k - i) * blockBytes, blockBytes));
                                label = Math.Max(label, w.Timestamp);
                                fua |= w.ForceUnitAccess;
                            }
                            source = buffer.AsMemory(0, runBytes);
                        }
                        // The fence is checked just before the disk write: a holder whose lease ended must not write.
                        if (grant.ExpiresUtc < DateTimeOffset.UtcNow) throw new LockFencedException(grant.FencingToken, "local lease expired");
                        var started = Stopwatch.GetTimestamp();
                        await store.WriteAsync((firstBlock + i) * blockBytes, source, label, fua, CancellationToken.None).ConfigureAwait(false);
                        usage.ObserveDiskLatency(Stopwatch.GetElapsedTime(started));
                        commits.Add(new BlockCommit(firstBlock + i, j - i, label));
                    }
                    finally
                    {
                        if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
                    }
                    i = j;
                }
                await lockGrain.CommitAsync(grant.FencingToken, commits.ToImmutable(), timestamps, SiloName, release: true).ConfigureAwait(false);
                released = true;
                foreach (var t in batch)
                {
                    var wrote = false;
                    for (var i = 0; i < count && !wrote; i++) wrote = winner[i] == t;
                    if (wrote) usage.WritePerformed();
                    Finish(t, new WriteReport(wrote ? WriteOutcome.Committed : WriteOutcome.Superseded, SiloName, null));
                }
                return;
            }
            catch (LockFencedException ex) when (attempt < MaxFencedRetries)
            {
                LogFenced(logger, v.Info.Name, ex.FencingToken);
            }
            catch (Exception ex) when (FirstServer.IsSiloFailure(ex) && attempt < MaxFencedRetries)
            {
                // The lock grain died with our lease; a new activation knows no holders, so take the lock again.
                LogFenced(logger, v.Info.Name, grant.FencingToken);
            }
            finally
            {
                if (!released)
                {
                    try { await lockGrain.ReleaseAsync(grant.FencingToken).ConfigureAwait(false); }
                    catch (Exception releaseEx) { LogBatchFailed(logger, v.Info.Name, firstStripe, lastStripe, releaseEx); }
                }
            }
        }
    }

    /// <summary>Reads from this silo's engine. The caller holds a shared lock on the stripes.</summary>
    public async Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v.Info, offsetBytes, lengthBytes);
        var data = new byte[lengthBytes];
        await ReadIntoAsync(volumeName, offsetBytes, data).ConfigureAwait(false);
        return data;
    }

    /// <summary>Reads from this silo's engine into <paramref name="destination"/>. The caller holds a shared lock on the stripes.</summary>
    public async Task ReadIntoAsync(string volumeName, long offsetBytes, Memory<byte> destination)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v.Info, offsetBytes, destination.Length);
        var started = Stopwatch.GetTimestamp();
        await v.Store.ReadAsync(offsetBytes, destination, CancellationToken.None).ConfigureAwait(false);
        usage.ObserveDiskLatency(Stopwatch.GetElapsedTime(started));
    }

    /// <summary>Discards a range under exclusive locks, after every earlier pending write of it, with a new timestamp so older copies stay dropped.</summary>
    public async Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v.Info, offsetBytes, lengthBytes);
        var spp = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        var stripeBytes = v.Store.StripeDataBytes;
        var end = offsetBytes + lengthBytes;
        for (var offset = offsetBytes; offset < end;)
        {
            var partition = offset / stripeBytes / spp;
            var pieceEnd = Math.Min(end, (partition + 1) * spp * stripeBytes);
            var (first, last) = v.Store.StripeRange(offset, pieceEnd - offset);
            var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, partition));
            var ts = await lockGrain.NextTimestampAsync(first, last, _siloAddress).ConfigureAwait(false);
            var grant = await lockGrain.AcquireMeteredAsync(new LockRequest(first, last, LockMode.Exclusive, _siloAddress, _options.LockLease, false)).ConfigureAwait(false);
            try
            {
                var b0 = offset / VolumeMath.BlockSizeBytes;
                var n = (int)((pieceEnd - offset) / VolumeMath.BlockSizeBytes);
                await lockGrain.ValidateAsync(grant.FencingToken, b0, n, [ts.Timestamp]).ConfigureAwait(false);
                await v.Store.TrimAsync(offset, pieceEnd - offset, CancellationToken.None).ConfigureAwait(false);
                await lockGrain.CommitAsync(grant.FencingToken, [new BlockCommit(b0, n, ts.Timestamp)], [ts.Timestamp], SiloName, release: true).ConfigureAwait(false);
            }
            catch
            {
                await lockGrain.ReleaseAsync(grant.FencingToken).ConfigureAwait(false);
                await lockGrain.SettleAsync([ts.Timestamp]).ConfigureAwait(false);
                throw;
            }
            offset = pieceEnd;
        }
    }

    /// <summary>Waits for the volume's queue to drain, then flushes its engine.</summary>
    public async Task FlushAsync(string volumeName)
    {
        if (!_volumes.TryGetValue(volumeName, out var lazy)) return;
        var v = await lazy.Value.ConfigureAwait(false);
        Task idle;
        lock (v.Gate) idle = v.Idle.Task;
        await idle.ConfigureAwait(false);
        await v.Store.FlushAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Drains and closes the volume's engine on this silo; the next request reopens it from its disks.</summary>
    public async Task CloseAsync(string volumeName)
    {
        directory.Invalidate(volumeName);
        if (!_volumes.TryRemove(volumeName, out var lazy)) return;
        VolumeRuntime v;
        try { v = await lazy.Value.ConfigureAwait(false); }
        catch (Exception) { return; }
        Task idle;
        lock (v.Gate) idle = v.Idle.Task;
        await idle.ConfigureAwait(false);
        await v.Store.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        await v.Store.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>The volume as this silo's engine sees it.</summary>
    public async Task<VolumeStatus> StatusAsync(string volumeName, RebuildStatus? rebuild)
    {
        try
        {
            var v = await OpenAsync(volumeName).ConfigureAwait(false);
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
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        CheckMember(v.Info, index);
        await v.Store.FailMemberAsync(index, reason).ConfigureAwait(false);
    }

    /// <summary>Replaces a member in this silo's engine.</summary>
    public async Task ReplaceMemberAsync(string volumeName, int index, string path)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        CheckMember(v.Info, index);
        await v.Store.ReplaceMemberAsync(index, path, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Rebuilds here; progress goes to <paramref name="progress"/>.</summary>
    public async Task RebuildAsync(string volumeName, IProgress<(long Done, long Total)> progress)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        await v.Store.RebuildAsync(new MeteredRebuildProgress(volumeName, progress), CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Scrubs here.</summary>
    public async Task<ScrubResult> ScrubAsync(string volumeName, bool repair)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        var result = await v.Store.ScrubAsync(repair, CancellationToken.None).ConfigureAwait(false);
        CloudMetrics.ScrubStripes.Add(result.StripesChecked, new KeyValuePair<string, object?>("kind", "checked"));
        CloudMetrics.ScrubStripes.Add(result.Mismatches, new KeyValuePair<string, object?>("kind", "mismatch"));
        CloudMetrics.ScrubStripes.Add(result.ChecksumErrors, new KeyValuePair<string, object?>("kind", "checksum-error"));
        return result;
    }

    /// <summary>Copies queued or running here.</summary>
    public int QueueDepth => usage.QueueDepth;

    private static void CheckMember(VolumeInfo v, int index)
    {
        if (index < 0 || index >= v.DiskCount)
            throw new CloudRequestException($"disk index {index} is not a member of volume '{v.Name}'; use 0-{v.DiskCount - 1}");
    }

    /// <summary>
    /// At a graceful stop: waits for every queued copy to reach disk and flushes, so that a single silo's restart
    /// loses nothing it acknowledged. Gives up when <paramref name="cancellationToken"/> fires (an ungraceful stop).
    /// </summary>
    public async Task DrainAllAsync(CancellationToken cancellationToken)
    {
        foreach (var lazy in _volumes.Values.ToList())
        {
            VolumeRuntime v;
            try { v = await lazy.Value.ConfigureAwait(false); }
            catch (Exception) { continue; }
            Task idle;
            lock (v.Gate) idle = v.Idle.Task;
            await idle.WaitAsync(cancellationToken).ConfigureAwait(false);
            await v.Store.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        // No draining here: a killed silo must not finish its queue (its first servers re-delegate the copies).
        foreach (var lazy in _volumes.Values.ToList())
        {
            try
            {
                if (lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully)
                    await lazy.Value.Result.Store.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex) { LogBatchFailed(logger, lazy.Value.Result.Info.Name, -1, -1, ex); }
        }
        _volumes.Clear();
    }

    private static bool IsSiloFailure(Exception ex) =>
        ex is SiloUnavailableException or OrleansMessageRejectionException or TimeoutException
        || ex is OrleansException { InnerException: SiloUnavailableException };

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: batch on stripes {First}-{Last} met a dead silo ({Error}); retrying")]
    private static partial void LogBatchRetry(ILogger logger, string volume, long first, long last, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: batch on stripes {First}-{Last} failed")]
    private static partial void LogBatchFailed(ILogger logger, string volume, long first, long last, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: lock token {Token} was fenced; retrying the batch")]
    private static partial void LogFenced(ILogger logger, string volume, long token);
}

/// <summary>Passes rebuild progress on and publishes it as the <c>cloud.rebuild.progress</c> gauge.</summary>
internal sealed class MeteredRebuildProgress(string volumeName, IProgress<(long Done, long Total)> inner) : IProgress<(long Done, long Total)>
{
    public void Report((long Done, long Total) value)
    {
        CloudMetrics.ReportRebuild(volumeName, value.Done, value.Total);
        inner.Report(value);
    }
}
