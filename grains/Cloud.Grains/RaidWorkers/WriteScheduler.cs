using System.Collections.Concurrent;
using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.RaidWorkers;

/// <summary>A replicated copy in the RAID worker's schedule, and the report its first server waits for.</summary>
internal sealed class Ticket(ReplicatedWrite write, long firstStripe, long lastStripe, long partition, bool awaited)
{
    /// <summary>
    /// The copy; its data is dropped once the copy is finished (the ticket outlives it for late pollers).
    /// </summary>
    public ReplicatedWrite Write { get; private set; } = write;

    /// <summary>Lets the copy's data go: a finished ticket is kept only for its report.</summary>
    public void DropData() => Write = Write with { Data = [] };

    public long FirstStripe { get; } = firstStripe;
    public long LastStripe { get; } = lastStripe;
    public long Partition { get; } = partition;

    /// <summary>
    /// A client waits for this copy's commit: a FUA write, or a first-time copy whose first server is this silo (it
    /// acknowledges only after the commit). Such copies run ahead of the ones already acknowledged.
    /// </summary>
    public bool Awaited { get; } = awaited;

    /// <summary>
    /// The span that handed the copy in (its delegation call, with Orleans' activity propagation): the batch that
    /// writes the copy runs later, on the schedule's own flow, and is traced under it explicitly.
    /// </summary>
    public ActivityContext Origin { get; } = Activity.Current?.Context ?? default;
    public bool Running { get; set; }

    /// <summary>A forced-unit-access copy: its batch waits for its members' flushes before it commits.</summary>
    public bool Durable => Write.ForceUnitAccess;
    public TaskCompletionSource<WriteReport> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// One volume's queued and running copies. Every member is read and changed under <see cref="Gate"/>.
/// </summary>
internal sealed class VolumeQueue
{
    public Lock Gate { get; } = new();
    public List<Ticket> Waiting { get; } = [];
    public List<(long First, long Last)> Running { get; } = [];
    public int RunningBatches { get; set; }

    /// <summary>Running batches of copies no client waits for (see <see cref="Ticket.Awaited"/>).</summary>
    public int RunningUnawaitedBatches { get; set; }
    public TaskCompletionSource Idle { get; set; } = CompletedIdle();

    /// <summary>Marks the queue busy (a copy arrived).</summary>
    public void Busy()
    {
        if (Idle.Task.IsCompleted) Idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Completes <see cref="Idle"/> when nothing is queued or running.</summary>
    public void SignalIfIdle()
    {
        if (Waiting.Count == 0 && RunningBatches == 0) Idle.TrySetResult();
    }

    private static TaskCompletionSource CompletedIdle()
    {
        var idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        idle.SetResult();
        return idle;
    }
}

/// <summary>
/// The RAID worker's schedule (patent claim 48): takes replicated copies in, within a bound on the bytes held;
/// merges queued copies of overlapping stripes of one partition into batches; runs batches whose stripes do not
/// overlap a running one, up to <see cref="CloudOptions.MaxConcurrentBatches"/> (durable ones up to
/// <see cref="CloudOptions.MaxConcurrentDurableBatches"/>); and keeps each copy's report for its first server.
/// </summary>
/// <remarks>
/// Copies a client waits for (<see cref="Ticket.Awaited"/>) start ahead of the rest, and the rest never take the last
/// <see cref="ReservedAwaitedBatches"/> slots. After a silo dies its first servers send every copy it held to the
/// survivors at once, hundreds of copies acknowledged long ago; in arrival order a new write that waits for its commit
/// would queue behind all of them for minutes. Order does not matter for correctness: every copy carries its timestamp,
/// and an older copy that runs after a newer one of the same blocks is found superseded and not written.
/// </remarks>
public sealed partial class WriteScheduler(
    OpenVolumeCache volumes,
    BatchExecutor executor,
    WriteLeases writeLeases,
    ILocalSiloDetails silo,
    SiloUsage usage,
    IOptions<CloudOptions> options,
    ILogger<WriteScheduler> logger)
{
    /// <summary>
    /// Slots of <see cref="CloudOptions.MaxConcurrentBatches"/> that only batches of copies a client waits for may take,
    /// so that such a copy starts as soon as it can, however long the queue of acknowledged copies.
    /// </summary>
    public const int ReservedAwaitedBatches = 4;

    /// <summary>Copies merged into one batch at most.</summary>
    public const int MaxBatchCopies = 64;

    /// <summary>Reports of finished copies kept for the first servers that have not asked yet.</summary>
    public const int MaxRetainedReports = 100_000;

    /// <summary>
    /// The longest a new non-FUA copy waits for the backlog to fall under <see cref="CommitPace.BacklogBytes"/> before
    /// it is taken in anyway: well under a call's response timeout, so a stalled disk slows the writers to one copy per
    /// wait each rather than failing their calls.
    /// </summary>
    public static readonly TimeSpan MaxPacingWait = TimeSpan.FromSeconds(10);

    private readonly CloudOptions _options = options.Value;
    private readonly ConcurrentDictionary<Guid, Ticket> _tickets = new();
    private readonly ConcurrentQueue<Guid> _finished = new();
    private readonly AdmissionSignal _spaceFreed = new();
    private long _queuedBytes;
    private int _pacedWaiters;

    /// <summary>The pace this silo finishes copies at, which bounds the acknowledged backlog.</summary>
    internal CommitPace Pace { get; } = new(TimeProvider.System);

    /// <summary>New copies waiting now for the backlog to shrink (for status and tests).</summary>
    public int PacedWaiters => Volatile.Read(ref _pacedWaiters);

    /// <summary>This silo's stable name.</summary>
    public string SiloName => silo.Name;

    /// <summary>Copies queued or running here.</summary>
    public int QueueDepth => usage.QueueDepth;

    /// <summary>Takes a replicated copy into the schedule; returns once it is held here.</summary>
    /// <param name="write">The copy.</param>
    /// <param name="runHere">
    /// The caller is this silo's own first server on a pool thread (not a grain turn): the first batch that can start
    /// runs on the caller's thread until its first wait, rather than being handed to another thread. A small write's
    /// batch often finishes there (file I/O of a chunk runs inline), and its first server then finds the commit done
    /// with no thread woken for the batch or for the report.
    /// </param>
    public async Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write, bool runHere = false)
    {
        if (_tickets.TryGetValue(write.WriteId, out var known) && !known.Done.Task.IsCompleted)
            return new DelegationReceipt(SiloName, true);
        var v = await volumes.OpenAsync(write.VolumeName).ConfigureAwait(false);
        var ticket = NewTicket(v, write);
        // Paced: a new copy whose first server acknowledges it once held here. A copy a client waits for is paced by
        // its own commit, and a re-sent one was acknowledged long ago: holding it back only delays its write.
        if (!ticket.Awaited && !write.Redelegated) await AdmitPacedAsync(write.Data.Length).ConfigureAwait(false);
        else await AdmitAsync(write.Data.Length).ConfigureAwait(false);
        _tickets[write.WriteId] = ticket;
        Interlocked.Add(ref _queuedBytes, write.Data.Length);
        usage.Enqueued(write.Data.Length);
        lock (v.Queue.Gate)
        {
            v.Queue.Waiting.Add(ticket);
            v.Queue.Busy();
        }
        if (_options.MergeWindow > TimeSpan.Zero)
            _ = Task.Delay(_options.MergeWindow).ContinueWith(_ => Pump(v), TaskScheduler.Default);
        else
            Pump(v, runHere);
        return new DelegationReceipt(SiloName, true);
    }

    private Ticket NewTicket(OpenVolume v, ReplicatedWrite write)
    {
        VolumeMath.CheckRange(v.Info, write.OffsetBytes, write.Data.Length);
        var (first, last) = v.Store.StripeRange(write.OffsetBytes, write.Data.Length);
        var stripesPerPartition = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
        if (first / stripesPerPartition != last / stripesPerPartition)
            throw new CloudRequestException(
                $"write {write.OffsetBytes}+{write.Data.Length} spans two partitions; the first server splits writes per partition");
        // The first server acknowledges a non-FUA write once a copy is held elsewhere; only when it is its own target
        // does it wait for the commit (FirstServerWrites.DelegateAsync), and a re-sent copy was acknowledged before.
        var awaited = write.ForceUnitAccess || (!write.Redelegated && write.FirstServer == SiloName);
        return new Ticket(write, first, last, first / stripesPerPartition, awaited);
    }

    /// <summary>
    /// Bounded memory: waits for room unless the queue is empty (a single copy larger than the bound still runs).
    /// </summary>
    private async Task AdmitAsync(long bytes)
    {
        while (true)
        {
            // Taken before the check, so that a copy finishing between the check and the wait still wakes this one.
            var freed = _spaceFreed.NextAsync();
            var queued = Interlocked.Read(ref _queuedBytes);
            if (queued == 0 || queued + bytes <= _options.MaxQueuedBytes) return;
            await freed.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits until the bytes queued here are under the acknowledged-backlog bound (<see cref="CommitPace"/>), at most
    /// <see cref="MaxPacingWait"/>, then within the memory bound.
    /// </summary>
    private async Task AdmitPacedAsync(long bytes)
    {
        var deadline = DateTimeOffset.UtcNow + MaxPacingWait;
        Interlocked.Increment(ref _pacedWaiters);
        try
        {
            while (true)
            {
                var freed = _spaceFreed.NextAsync();
                var queued = Interlocked.Read(ref _queuedBytes);
                if (queued == 0 || queued + bytes <= Pace.BacklogBytes(_options.MaxQueuedBytes)) break;
                var left = deadline - DateTimeOffset.UtcNow;
                if (left <= TimeSpan.Zero) break;
                try { await freed.WaitAsync(left).ConfigureAwait(false); }
                catch (TimeoutException) { break; }
            }
        }
        finally { Interlocked.Decrement(ref _pacedWaiters); }
        await AdmitAsync(bytes).ConfigureAwait(false);
    }

    /// <summary>Waits for a copy's fate.</summary>
    public async Task<WriteReport> WaitAsync(Guid writeId, TimeSpan maxWait)
    {
        if (!_tickets.TryGetValue(writeId, out var ticket))
            return new WriteReport(WriteOutcome.Unknown, SiloName, null);
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
    public async Task<int> CancelSupersededAsync(
        string volumeName,
        long offsetBytes,
        long lengthBytes,
        long newerTimestamp)
    {
        if (!volumes.TryGetOpen(volumeName, out var v)) return 0;
        List<Ticket> cancelled = [];
        lock (v.Queue.Gate)
        {
            var waiting = v.Queue.Waiting;
            for (var i = waiting.Count - 1; i >= 0; i--)
            {
                var t = waiting[i];
                if (!t.Running && t.Write.Timestamp < newerTimestamp && t.Write.OffsetBytes >= offsetBytes
                    && t.Write.OffsetBytes + t.Write.Data.Length <= offsetBytes + lengthBytes)
                {
                    waiting.RemoveAt(i);
                    cancelled.Add(t);
                }
            }
            v.Queue.SignalIfIdle();
        }
        if (cancelled.Count == 0) return 0;
        foreach (var group in cancelled.GroupBy(t => t.Partition))
        {
            var key = VolumeMath.PartitionKey(v.Info, group.Key);
            await writeLeases.SettleAsync(key, [.. group.Select(t => t.Write.Timestamp)]).ConfigureAwait(false);
        }
        foreach (var t in cancelled) Finish(t, new WriteReport(WriteOutcome.Cancelled, SiloName, null));
        return cancelled.Count;
    }

    /// <summary>Waits until nothing is queued or running for the volume.</summary>
    internal static Task WaitIdleAsync(OpenVolume v, CancellationToken cancellationToken = default)
    {
        Task idle;
        lock (v.Queue.Gate) idle = v.Queue.Idle.Task;
        return idle.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Opens the volume here if it is not open, waits for its queue to drain, then flushes every member
    /// (<see cref="Engine.IVolumeStore.FlushEveryMemberAsync"/>): what a silo that died wrote is made durable.
    /// </summary>
    public async Task FlushEveryMemberAsync(string volumeName)
    {
        var v = await volumes.OpenAsync(volumeName).ConfigureAwait(false);
        await WaitIdleAsync(v).ConfigureAwait(false);
        await v.Store.FlushEveryMemberAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Waits for the volume's queue to drain, then flushes its engine.</summary>
    public async Task FlushAsync(string volumeName)
    {
        if (volumes.Opening(volumeName) is not { } opening) return;
        var v = await opening.ConfigureAwait(false);
        await WaitIdleAsync(v).ConfigureAwait(false);
        await v.Store.FlushAsync(CancellationToken.None).ConfigureAwait(false);
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
        if (report.Outcome is WriteOutcome.Committed or WriteOutcome.Superseded) Pace.Finished(bytes);
        _spaceFreed.Raise();
        CloudMetrics.WriteOutcomes.Add(
            1, new KeyValuePair<string, object?>("outcome", report.Outcome.ToString().ToLowerInvariant()));
        _finished.Enqueue(t.Write.WriteId);
        while (_finished.Count > MaxRetainedReports && _finished.TryDequeue(out var old))
            _tickets.TryRemove(old, out _);
    }

    /// <summary>
    /// Starts every batch that can run: its stripes overlap no running batch, and the concurrency bound allows.
    /// </summary>
    private void Pump(OpenVolume v, bool runFirstHere = false)
    {
        while (TakeBatch(v.Queue) is { } batch)
        {
            if (runFirstHere)
            {
                runFirstHere = false;
                _ = RunBatchAsync(v, batch);
            }
            else
            {
                _ = Task.Run(() => RunBatchAsync(v, batch));
            }
        }
    }

    /// <summary>
    /// The next batch to run, marked running, or null when none can start now: copies a client waits for first, each
    /// class in arrival order. Past <see cref="CloudOptions.MaxConcurrentBatches"/> only durable batches start, up to
    /// <see cref="CloudOptions.MaxConcurrentDurableBatches"/> in all.
    /// </summary>
    private List<Ticket>? TakeBatch(VolumeQueue q)
    {
        var plainMost = _options.MaxConcurrentBatches;
        var most = Math.Max(plainMost, _options.MaxConcurrentDurableBatches);
        lock (q.Gate)
        {
            if (q.RunningBatches >= most) return null;
            var durableOnly = q.RunningBatches >= plainMost;
            if (Start(q, awaited: true, durableOnly) is { } batch) return batch;
            if (durableOnly || q.RunningUnawaitedBatches >= plainMost - ReservedAwaitedBatches) return null;
            return Start(q, awaited: false, durableOnly: false);
        }
    }

    /// <summary>
    /// Starts the first batch of the class <paramref name="awaited"/> (only of durable copies with
    /// <paramref name="durableOnly"/>) that can run now. Under the gate.
    /// </summary>
    private static List<Ticket>? Start(VolumeQueue q, bool awaited, bool durableOnly)
    {
        foreach (var head in q.Waiting)
        {
            if (head.Awaited != awaited || head.Running || (durableOnly && !head.Durable)
                || OverlapsRunning(q, head.FirstStripe, head.LastStripe))
                continue;
            var batch = MergeAround(q, head);
            foreach (var t in batch) t.Running = true;
            q.Running.Add((batch.Min(t => t.FirstStripe), batch.Max(t => t.LastStripe)));
            q.RunningBatches++;
            if (!awaited) q.RunningUnawaitedBatches++;
            return batch;
        }
        return null;
    }

    /// <summary>
    /// Grows a batch from <paramref name="head"/> with every queued copy of its partition and class (awaited or not)
    /// that overlaps the batch's stripes: a copy a client waits for is not made to carry a pile of older ones.
    /// </summary>
    private static List<Ticket> MergeAround(VolumeQueue q, Ticket head)
    {
        List<Ticket> batch = [head];
        long first = head.FirstStripe, last = head.LastStripe;
        var grown = true;
        while (grown && batch.Count < MaxBatchCopies)
        {
            grown = false;
            foreach (var t in q.Waiting)
            {
                if (t.Running || batch.Count >= MaxBatchCopies || t.Partition != head.Partition
                    || t.Awaited != head.Awaited || batch.Contains(t))
                    continue;
                if (t.FirstStripe <= last && first <= t.LastStripe && !OverlapsRunning(q, t.FirstStripe, t.LastStripe))
                {
                    batch.Add(t);
                    first = Math.Min(first, t.FirstStripe);
                    last = Math.Max(last, t.LastStripe);
                    grown = true;
                }
            }
        }
        return batch;
    }

    private static bool OverlapsRunning(VolumeQueue q, long first, long last)
        => q.Running.Exists(r => r.First <= last && first <= r.Last);

    private async Task RunBatchAsync(OpenVolume v, List<Ticket> batch)
    {
        long first = batch.Min(t => t.FirstStripe), last = batch.Max(t => t.LastStripe);
        var copies = batch.ConvertAll(t => t.Write);
        try
        {
            // A partition-lock grain on a silo that just died fails every call until membership declares that silo
            // dead and the grain is activated elsewhere. The copies may be the only ones left (their first server may
            // have died with it), so keep trying rather than drop writes that were already acknowledged.
            var wrote = await SiloFailures.RetryAsync(
                () => executor.WriteBatchAsync(v, copies, batch[0].Partition, first, last, batch.ConvertAll(t => t.Origin)),
                _options.RedelegationTimeout,
                ex => LogBatchRetry(logger, v.Info.Name, first, last, ex.GetType().Name)).ConfigureAwait(false);
            for (var i = 0; i < batch.Count; i++)
            {
                if (wrote[i]) usage.WritePerformed();
                Finish(
                    batch[i],
                    new WriteReport(wrote[i] ? WriteOutcome.Committed : WriteOutcome.Superseded, SiloName, null));
            }
        }
        catch (Exception ex)
        {
            await FailBatchAsync(v, batch, first, last, ex).ConfigureAwait(false);
        }
        finally
        {
            lock (v.Queue.Gate)
            {
                foreach (var t in batch) v.Queue.Waiting.Remove(t);
                v.Queue.Running.Remove((first, last));
                v.Queue.RunningBatches--;
                if (!batch[0].Awaited) v.Queue.RunningUnawaitedBatches--;
                v.Queue.SignalIfIdle();
            }
            Pump(v);
        }
    }

    private async Task FailBatchAsync(OpenVolume v, List<Ticket> batch, long first, long last, Exception ex)
    {
        LogBatchFailed(logger, v.Info.Name, first, last, ex);
        var key = VolumeMath.PartitionKey(v.Info, batch[0].Partition);
        // Only the versions of copies a client waits for end here: their failure reaches the client, and no one sends
        // them again. Any other copy was acknowledged; its first server sends it again (to this silo or another), so
        // its version stays pending and reads of its blocks keep waiting for it rather than read what it replaced.
        long[] settled = [.. batch.Where(t => t.Awaited).Select(t => t.Write.Timestamp)];
        try
        {
            if (settled.Length > 0)
                await writeLeases.SettleAsync(key, [.. settled]).ConfigureAwait(false);
        }
        catch (Exception settleEx) { LogBatchFailed(logger, v.Info.Name, first, last, settleEx); }
        foreach (var t in batch) Finish(t, new WriteReport(WriteOutcome.Failed, SiloName, ex.Message));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: batch on stripes {First}-{Last} met a dead silo ({Error}); retrying")]
    private static partial void LogBatchRetry(ILogger logger, string volume, long first, long last, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: batch on stripes {First}-{Last} failed")]
    private static partial void LogBatchFailed(
        ILogger logger,
        string volume,
        long first,
        long last,
        Exception exception);
}
