using System.Collections.Concurrent;
using System.Collections.Immutable;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.Locks;

/// <summary>
/// The write leases this silo holds, one at most per partition: the write-side counterpart of <see cref="ReadLeases"/>.
/// A silo that is a partition's only writer (its first server and its RAID worker, nothing else pending or locked
/// there) asks the partition-lock grain for the whole partition (<see cref="IPartitionLockGrain.TryLeaseWritesAsync"/>)
/// and gets a range of timestamps. Until the grain ends the lease, this silo does here, in memory, what the grain
/// would: it hands out the timestamps of its own writes and tracks them as pending, takes the stripe locks of its
/// batches and reads, validates each batch against the blocks committed under the lease, and records the commits. A
/// write then costs no grain call at all, where it cost three (timestamp, lock and validation, commit).
/// </summary>
/// <remarks>
/// <para>
/// The grain ends the lease before it hands anything of the partition to anyone (a timestamp, a lock, another lease,
/// a new target), when it expires, and when a new activation reclaims the partition: it calls
/// <see cref="EndAsync"/> through this silo's RAID worker, which stops new work under the lease, waits for the
/// batches and reads running under it, and returns the versions still pending, the block ranges committed and the
/// ranges a failed batch may have left uncommitted; the grain merges them into its own state, so that reads keep
/// waiting for acknowledged writes and later batches are validated against every commit. A holder that does not
/// answer is waited for until its lease expires (or the membership declares it dead), and the whole partition is then
/// treated as uncertain: later writers compare with the block timestamps on disk, as after a writer's death.
/// </para>
/// <para>
/// Timestamps under a lease come from the grain's persisted clock reservation, above every timestamp the grain
/// handed out before and below every one it hands out after, so versions stay ordered across the lease's start and
/// end. The lease is used only until a quarter of its length before the grain's expiry (clocks trusted to that margin,
/// as for every lock lease), and renewed in the background while in use.
/// </para>
/// </remarks>
public sealed partial class WriteLeases(
    IGrainFactory grains,
    ILocalSiloDetails silo,
    IOptions<CloudOptions> options,
    TimeProvider time,
    ILogger<WriteLeases> logger)
{
    /// <summary>How long the grain waits for the asking silo's own pending versions and batches to end.</summary>
    public static readonly TimeSpan QuietWait = TimeSpan.FromSeconds(1);

    /// <summary>The pause after a refused lease before this silo asks for that partition again (doubling to 30 s).</summary>
    public static readonly TimeSpan RefusedPause = TimeSpan.FromMilliseconds(500);

    private static readonly TimeSpan MaxRefusedPause = TimeSpan.FromSeconds(30);

    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();
    private readonly ConcurrentDictionary<string, Lease> _leases = new();
    private readonly ConcurrentDictionary<string, Asking> _asking = new();
    private readonly Dictionary<string, long> _endedUpTo = [];

    /// <summary>
    /// Each partition's last lease end, kept for a while: a grain whose end call timed out (the batches under the lease
    /// took longer) asks again and must get the same answer, not an empty one.
    /// </summary>
    private readonly Dictionary<string, (long Id, Task<WriteLeaseReturn> Returned)> _ends = [];
    private readonly Lock _gate = new();
    private long _localTimestamps;
    private long _localBatches;
    private long _localReads;
    private long _granted;

    private TimeSpan Length => _options.LockLease;

    /// <summary>Timestamps handed out here under a lease since the silo started (for status and tests).</summary>
    public long LocalTimestamps => Interlocked.Read(ref _localTimestamps);

    /// <summary>Batches locked, validated and committed here under a lease (for status and tests).</summary>
    public long LocalBatches => Interlocked.Read(ref _localBatches);

    /// <summary>Reads that waited and locked here under a lease (for status and tests).</summary>
    public long LocalReads => Interlocked.Read(ref _localReads);

    /// <summary>Leases the grains gave this silo since it started (for status and tests).</summary>
    public long Granted => Interlocked.Read(ref _granted);

    /// <summary>Whether this silo holds a lease on the partition now, usable or not.</summary>
    public bool Holds(string partitionKey) => _leases.ContainsKey(partitionKey);

    /// <summary>A stripe lock taken under a lease.</summary>
    public sealed class Hold
    {
        internal Hold(Lease lease, long token, long first, long last, bool exclusive)
        {
            Lease = lease;
            Token = token;
            First = first;
            Last = last;
            Exclusive = exclusive;
        }

        internal Lease Lease { get; }

        /// <summary>A token from the lease's range, as the grain gives each grant one of its counter.</summary>
        internal long Token { get; }
        internal long First { get; }
        internal long Last { get; }
        internal bool Exclusive { get; }
    }

    private sealed class Asking
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed record Pause(DateTimeOffset Until, TimeSpan Length);

    private readonly ConcurrentDictionary<string, Pause> _paused = new();

    /// <summary>One lease: its timestamp range, and the pending versions, commits and stripe locks under it.</summary>
    public sealed class Lease
    {
        private readonly Lock _sync = new();
        private readonly Dictionary<long, (long First, long Last)> _pending = [];
        private readonly Dictionary<long, long> _committed = [];
        private readonly List<Hold> _holds = [];
        private readonly LinkedList<(Hold Hold, TaskCompletionSource<Hold?> Granted)> _waiters = new();
        private readonly List<(long First, long Last, long Below, TaskCompletionSource<bool> Done)> _pendingWaits = [];
        private readonly List<HeldVersion> _uncertain = [];
        private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _next;
        private bool _ended;
        private bool _exported;
        private Task? _renewing;

        /// <summary>
        /// Set when a new activation of the grain reclaimed the partition: the locks then held here were reported to it
        /// as its holders, and each is released there when it ends here.
        /// </summary>
        private Action<Hold>? _releaseReported;

        internal Lease(string key, WriteLeaseGrant grant)
        {
            Key = key;
            Id = grant.Id;
            FirstTimestamp = grant.FirstTimestamp;
            LastTimestamp = grant.LastTimestamp;
            ExpiresUtc = grant.ExpiresUtc;
            _next = grant.FirstTimestamp;
        }

        internal string Key { get; }
        internal long Id { get; }
        internal long FirstTimestamp { get; }
        internal long LastTimestamp { get; }
        internal DateTimeOffset ExpiresUtc { get; private set; }

        internal bool Covers(long timestamp) => timestamp >= FirstTimestamp && timestamp <= LastTimestamp;

        private bool UsableAt(DateTimeOffset now, TimeSpan length) => !_ended && ExpiresUtc - now > length / 4;

        /// <summary>Whether a renewal is due (less than half the length left) and none is running; marks one running.</summary>
        internal bool TryStartRenewal(DateTimeOffset now, TimeSpan length, Func<Task> renew)
        {
            lock (_sync)
            {
                if (_ended || ExpiresUtc - now >= length / 2 || _renewing is { IsCompleted: false }) return false;
                _renewing = renew();
                return true;
            }
        }

        internal Task Renewing
        {
            get { lock (_sync) return _renewing ?? Task.CompletedTask; }
        }

        internal void Extend(DateTimeOffset expiresUtc)
        {
            lock (_sync)
            {
                if (expiresUtc > ExpiresUtc) ExpiresUtc = expiresUtc;
            }
        }

        /// <summary>The grain no longer knows the lease (it gave up on this silo): nothing may use it any more.</summary>
        internal void Lapse()
        {
            lock (_sync) ExpiresUtc = DateTimeOffset.MinValue;
        }

        internal bool TryTake(long first, long last, DateTimeOffset now, TimeSpan length, out long timestamp)
        {
            lock (_sync)
            {
                timestamp = 0;
                if (!UsableAt(now, length) || _next > LastTimestamp) return false;
                timestamp = _next++;
                _pending[timestamp] = (first, last);
                return true;
            }
        }

        /// <summary>The next timestamp this lease would hand out: reads wait for the pending versions below it.</summary>
        internal long Next
        {
            get { lock (_sync) return _next; }
        }

        internal Task<bool> WaitPendingAsync(long first, long last, long below)
        {
            lock (_sync)
            {
                if (_ended) return Task.FromResult(false);
                if (!AnyPending(first, last, below)) return Task.FromResult(true);
                var done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                _pendingWaits.Add((first, last, below, done));
                return done.Task;
            }
        }

        internal Task<Hold?> LockAsync(long first, long last, bool exclusive, DateTimeOffset now, TimeSpan length)
        {
            lock (_sync)
            {
                if (!UsableAt(now, length) || _next > LastTimestamp) return Task.FromResult<Hold?>(null);
                var hold = new Hold(this, _next++, first, last, exclusive);
                if (CanGrant(hold, null))
                {
                    _holds.Add(hold);
                    return Task.FromResult<Hold?>(hold);
                }
                var granted = new TaskCompletionSource<Hold?>(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.AddLast((hold, granted));
                return granted.Task;
            }
        }

        /// <summary>Every batch timestamp was handed out by this lease and is still pending under it.</summary>
        internal bool OwnsAll(ImmutableArray<long> timestamps)
        {
            lock (_sync)
            {
                foreach (var ts in timestamps)
                    if (!Covers(ts) || !_pending.ContainsKey(ts)) return false;
                return true;
            }
        }

        internal ValidationResult Validate(Hold hold, long firstBlock, int blockCount, ImmutableArray<long> batch)
        {
            lock (_sync)
            {
                // Blocks committed before the lease carry older timestamps than any of the lease's, so a block this
                // lease did not commit counts as 0, as it would for the batch's decision.
                var committed = new long[blockCount];
                for (var i = 0; i < blockCount; i++) committed[i] = _committed.GetValueOrDefault(firstBlock + i);
                var newest = batch.Max();
                var mergeSafe = true;
                foreach (var (ts, p) in _pending)
                {
                    if (ts < newest && p.First <= hold.Last && hold.First <= p.Last && !batch.Contains(ts))
                    {
                        mergeSafe = false;
                        break;
                    }
                }
                return new ValidationResult(ImmutableArray.Create(committed), mergeSafe);
            }
        }

        /// <summary>Records a batch's commits, settles its versions and gives its lock back.</summary>
        internal void Commit(Hold hold, ImmutableArray<BlockCommit> written, ImmutableArray<long> settled)
        {
            lock (_sync)
            {
                foreach (var c in written)
                    for (var b = c.FirstBlock; b < c.FirstBlock + c.BlockCount; b++)
                        if (_committed.GetValueOrDefault(b) < c.Timestamp) _committed[b] = c.Timestamp;
                foreach (var ts in settled) _pending.Remove(ts);
                ReleaseLocked(hold);
            }
        }

        /// <summary>
        /// Gives a lock back without a commit: an exclusive holder may have written some blocks, so its stripes go to
        /// the grain as uncertain when the lease ends.
        /// </summary>
        internal void Release(Hold hold)
        {
            lock (_sync)
            {
                if (hold.Exclusive) _uncertain.Add(new HeldVersion(0, hold.First, hold.Last));
                ReleaseLocked(hold);
            }
        }

        /// <summary>Settles a pending version of this lease unless the lease already handed its versions back.</summary>
        internal bool TrySettle(long timestamp)
        {
            lock (_sync)
            {
                if (_exported) return false;
                if (_pending.Remove(timestamp)) WakePendingWaits();
                return true;
            }
        }

        /// <summary>
        /// Ends the lease: nothing new starts under it, waiting locks and reads go to the grain instead, and once the
        /// locks held under it are given back, what the grain must know is returned.
        /// </summary>
        internal async Task<WriteLeaseReturn> EndAsync()
        {
            lock (_sync)
            {
                _ended = true;
                foreach (var (_, granted) in _waiters) granted.TrySetResult(null);
                _waiters.Clear();
                foreach (var w in _pendingWaits) w.Done.TrySetResult(false);
                _pendingWaits.Clear();
                if (_holds.Count == 0) _drained.TrySetResult();
            }
            await _drained.Task.ConfigureAwait(false);
            lock (_sync)
            {
                _exported = true;
                return new WriteLeaseReturn(
                    [.. _pending.Select(p => new HeldVersion(p.Key, p.Value.First, p.Value.Last))],
                    CommittedRuns(),
                    [.. _uncertain]);
            }
        }

        /// <summary>
        /// Ends the lease for a new activation of the grain without waiting for the work under it: the locks held now
        /// are returned as grants for the new activation to hold (each released there through
        /// <paramref name="releaseReported"/> when it ends here), with the versions still pending. The new activation
        /// starts above every timestamp of the lease and checks the disk for older versions, so the commits under the
        /// lease need not come back.
        /// </summary>
        internal (ImmutableArray<LockGrant> Grants, ImmutableArray<HeldVersion> Pending) EndForReclaim(
            Action<Hold> releaseReported)
        {
            lock (_sync)
            {
                _ended = true;
                _exported = true;
                foreach (var (_, granted) in _waiters) granted.TrySetResult(null);
                _waiters.Clear();
                foreach (var w in _pendingWaits) w.Done.TrySetResult(false);
                _pendingWaits.Clear();
                _releaseReported = releaseReported;
                if (_holds.Count == 0) _drained.TrySetResult();
                return (
                    [.. _holds.Select(h => new LockGrant(
                        h.Token, h.First, h.Last, h.Exclusive ? LockMode.Exclusive : LockMode.Shared, ExpiresUtc))],
                    [.. _pending.Select(p => new HeldVersion(p.Key, p.Value.First, p.Value.Last))]);
            }
        }

        private ImmutableArray<BlockCommit> CommittedRuns()
        {
            var runs = ImmutableArray.CreateBuilder<BlockCommit>();
            long start = 0, ts = 0;
            var count = 0;
            foreach (var (block, stamp) in _committed.OrderBy(e => e.Key))
            {
                if (count > 0 && block == start + count && stamp == ts)
                {
                    count++;
                    continue;
                }
                if (count > 0) runs.Add(new BlockCommit(start, count, ts));
                (start, ts, count) = (block, stamp, 1);
            }
            if (count > 0) runs.Add(new BlockCommit(start, count, ts));
            return runs.ToImmutable();
        }

        private void ReleaseLocked(Hold hold)
        {
            if (!_holds.Remove(hold)) return;
            _releaseReported?.Invoke(hold);
            for (var n = _waiters.First; n is not null;)
            {
                var next = n.Next;
                if (CanGrant(n.Value.Hold, n))
                {
                    _waiters.Remove(n);
                    _holds.Add(n.Value.Hold);
                    n.Value.Granted.TrySetResult(n.Value.Hold);
                }
                n = next;
            }
            WakePendingWaits();
            if (_ended && _holds.Count == 0) _drained.TrySetResult();
        }

        private bool CanGrant(Hold h, LinkedListNode<(Hold Hold, TaskCompletionSource<Hold?> Granted)>? self)
        {
            foreach (var other in _holds)
                if (other.First <= h.Last && h.First <= other.Last && (other.Exclusive || h.Exclusive)) return false;
            for (var n = _waiters.First; n is not null && n != self; n = n.Next)
            {
                var w = n.Value.Hold;
                if (w.First <= h.Last && h.First <= w.Last && (w.Exclusive || h.Exclusive)) return false;
            }
            return true;
        }

        private bool AnyPending(long first, long last, long below)
        {
            foreach (var (ts, p) in _pending)
                if (ts < below && p.First <= last && first <= p.Last) return true;
            return false;
        }

        private void WakePendingWaits()
        {
            for (var i = _pendingWaits.Count - 1; i >= 0; i--)
            {
                var w = _pendingWaits[i];
                if (AnyPending(w.First, w.Last, w.Below)) continue;
                _pendingWaits.RemoveAt(i);
                w.Done.TrySetResult(true);
            }
        }
    }

    /// <summary>
    /// A timestamp for this silo's own write of stripes <paramref name="first"/>-<paramref name="last"/> under its
    /// lease, registered as pending there; false when no usable lease is held (the caller asks the grain).
    /// </summary>
    public bool TryTimestamp(string partitionKey, long first, long last, out long timestamp)
    {
        timestamp = 0;
        if (!_leases.TryGetValue(partitionKey, out var lease)) return false;
        if (!lease.TryTake(first, last, time.GetUtcNow(), Length, out timestamp)) return false;
        Interlocked.Increment(ref _localTimestamps);
        RenewIfDue(lease);
        return true;
    }

    /// <summary>
    /// Waits for a lease being asked for on the partition (so that this silo's own writes do not keep the partition
    /// from going quiet meanwhile); returns at once when none is.
    /// </summary>
    public Task WaitForAskingAsync(string partitionKey) =>
        _asking.TryGetValue(partitionKey, out var asking) ? asking.Done.Task : Task.CompletedTask;

    /// <summary>
    /// Asks the grain for a lease on the partition in the background, unless one is held or being asked for, or a
    /// refusal was recent. Called when this silo's first server finds itself the partition's target.
    /// </summary>
    public void Want(string partitionKey)
    {
        if (!_options.WriteLeases || _leases.ContainsKey(partitionKey)) return;
        if (_paused.TryGetValue(partitionKey, out var pause) && pause.Until > time.GetUtcNow()) return;
        var asking = new Asking();
        if (!_asking.TryAdd(partitionKey, asking)) return;
        _ = AskAsync(partitionKey, asking);
    }

    private async Task AskAsync(string partitionKey, Asking asking)
    {
        try
        {
            var grant = await grains.GetGrain<IPartitionLockGrain>(partitionKey)
                .TryLeaseWritesAsync(_siloAddress, silo.Name, Length).ConfigureAwait(false);
            if (grant is not null && Add(partitionKey, grant))
            {
                _paused.TryRemove(partitionKey, out _);
                return;
            }
            PauseAsking(partitionKey);
        }
        catch (Exception ex)
        {
            LogAskFailed(logger, partitionKey, ex.GetType().Name, ex.Message);
            PauseAsking(partitionKey);
        }
        finally
        {
            _asking.TryRemove(partitionKey, out _);
            asking.Done.TrySetResult();
        }
    }

    private void PauseAsking(string partitionKey)
    {
        var length = _paused.TryGetValue(partitionKey, out var last)
            ? TimeSpan.FromTicks(Math.Min(last.Length.Ticks * 2, MaxRefusedPause.Ticks))
            : RefusedPause;
        _paused[partitionKey] = new Pause(time.GetUtcNow() + length, length);
    }

    /// <summary>
    /// Records a lease the grain gave, unless an end naming its id (or a later one) came first; false when refused.
    /// </summary>
    public bool Add(string partitionKey, WriteLeaseGrant grant)
    {
        lock (_gate)
        {
            if (_endedUpTo.TryGetValue(partitionKey, out var ended) && grant.Id <= ended) return false;
            if (_leases.TryGetValue(partitionKey, out var held) && held.ExpiresUtc > time.GetUtcNow())
            {
                if (held.Id != grant.Id) return false;
                held.Extend(grant.ExpiresUtc);
                return true;
            }
            // A lease held here that ran out without its end (the grain could not reach this silo) is replaced: the
            // grain took the partition back as uncertain, and nothing uses an expired lease.
            _leases[partitionKey] = new Lease(partitionKey, grant);
            _ends.Remove(partitionKey);
        }
        Interlocked.Increment(ref _granted);
        LogGranted(logger, partitionKey, grant.FirstTimestamp, grant.LastTimestamp);
        return true;
    }

    /// <summary>
    /// The exclusive lock of a batch whose every timestamp this silo's lease handed out, with its validation; null when
    /// the batch must go to the grain (no usable lease, a timestamp from elsewhere, or the lease ended meanwhile).
    /// </summary>
    public async Task<(Hold Hold, WriteLockGrant Grant)?> TryLockForWriteAsync(
        string partitionKey,
        long firstStripe,
        long lastStripe,
        long firstBlock,
        int blockCount,
        ImmutableArray<long> batchTimestamps)
    {
        if (!_leases.TryGetValue(partitionKey, out var lease) || !lease.OwnsAll(batchTimestamps)) return null;
        var hold = await lease.LockAsync(firstStripe, lastStripe, exclusive: true, time.GetUtcNow(), Length)
            .ConfigureAwait(false);
        if (hold is null) return null;
        var validation = lease.Validate(hold, firstBlock, blockCount, batchTimestamps);
        Interlocked.Increment(ref _localBatches);
        var grant = new LockGrant(lease.Id, firstStripe, lastStripe, LockMode.Exclusive, UsableUntil(lease));
        return (hold, new WriteLockGrant(grant, validation, DiskCheckNeeded: false));
    }

    /// <summary>
    /// A batch's checkpoint before a disk write under a lease: renews the lease if due and returns the grant with the
    /// time until which the lease may be used. Throws <see cref="LockFencedException"/> when that time has passed.
    /// </summary>
    public async Task<LockGrant> FreshAsync(Hold hold)
    {
        var lease = hold.Lease;
        RenewIfDue(lease);
        if (lease.ExpiresUtc - time.GetUtcNow() < Length / 2) await lease.Renewing.ConfigureAwait(false);
        var until = UsableUntil(lease);
        if (until <= time.GetUtcNow()) throw new LockFencedException(lease.Id, lease.Key);
        return new LockGrant(lease.Id, hold.First, hold.Last, LockMode.Exclusive, until);
    }

    private DateTimeOffset UsableUntil(Lease lease) => lease.ExpiresUtc - Length / 4;

    /// <summary>Commits a batch written under a lease and gives its lock back.</summary>
    public static void Commit(Hold hold, ImmutableArray<BlockCommit> written, ImmutableArray<long> settled) =>
        hold.Lease.Commit(hold, written, settled);

    /// <summary>Gives a lock taken under a lease back without a commit.</summary>
    public static void Release(Hold hold) => hold.Lease.Release(hold);

    /// <summary>
    /// A read's shared lock under this silo's lease, after every version of its stripes handed out before it settled;
    /// null when the read must go to the grain.
    /// </summary>
    public async Task<Hold?> TryEnterReadAsync(string partitionKey, long firstStripe, long lastStripe)
    {
        if (!_leases.TryGetValue(partitionKey, out var lease)) return null;
        if (!await lease.WaitPendingAsync(firstStripe, lastStripe, lease.Next).ConfigureAwait(false)) return null;
        var hold = await lease.LockAsync(firstStripe, lastStripe, exclusive: false, time.GetUtcNow(), Length)
            .ConfigureAwait(false);
        if (hold is not null) Interlocked.Increment(ref _localReads);
        return hold;
    }

    /// <summary>
    /// Settles versions that ended without a disk write: those of a lease held here end here, the rest at the grain.
    /// </summary>
    public Task SettleAsync(string partitionKey, ImmutableArray<long> timestamps)
    {
        if (_leases.TryGetValue(partitionKey, out var lease))
        {
            var rest = timestamps.Where(ts => !lease.Covers(ts) || !lease.TrySettle(ts)).ToImmutableArray();
            if (rest.IsEmpty) return Task.CompletedTask;
            timestamps = rest;
        }
        return grains.GetGrain<IPartitionLockGrain>(partitionKey).SettleAsync(timestamps);
    }

    /// <summary>
    /// Ends this silo's lease <paramref name="id"/> (or, with <see cref="long.MaxValue"/>, any) on the partition, and
    /// refuses that grant if it is still on its way; see <see cref="Lease.EndAsync"/>.
    /// </summary>
    public async Task<WriteLeaseReturn> EndAsync(string partitionKey, long id)
    {
        Lease? ended = null;
        Task<WriteLeaseReturn> returning;
        lock (_gate)
        {
            if (id != long.MaxValue)
                _endedUpTo[partitionKey] = Math.Max(id, _endedUpTo.GetValueOrDefault(partitionKey));
            if (_leases.TryGetValue(partitionKey, out var held) && held.Id <= id)
            {
                _leases.TryRemove(partitionKey, out _);
                ended = held;
                returning = held.EndAsync();
                _ends[partitionKey] = (held.Id, returning);
                _ = ForgetEndAsync(partitionKey, held.Id, returning);
            }
            else if (_ends.TryGetValue(partitionKey, out var end) && end.Id <= id)
            {
                // Asked again (the first call timed out while the batches under the lease ran): the same answer.
                returning = end.Returned;
            }
            else
            {
                return new WriteLeaseReturn([], [], []);
            }
        }
        var returned = await returning.ConfigureAwait(false);
        if (ended is null) return returned;
        // Asked for again only after a pause: a partition another silo reads or writes should not bounce.
        PauseAsking(partitionKey);
        LogEnded(logger, partitionKey, ended.Id, returned.Pending.Length, returned.Committed.Length);
        return returned;
    }

    /// <summary>
    /// For a new activation of the partition's grain (its reclaim): ends this silo's lease of an earlier activation
    /// (ids up to <paramref name="upTo"/>) at once and returns the locks held under it, as grants the new activation
    /// holds until each ends here, and its pending versions; see <see cref="Lease.EndForReclaim"/>.
    /// </summary>
    public (ImmutableArray<LockGrant> Grants, ImmutableArray<HeldVersion> Pending) EndForReclaim(
        string partitionKey,
        long upTo)
    {
        Lease? ended = null;
        lock (_gate)
        {
            _endedUpTo[partitionKey] = Math.Max(upTo, _endedUpTo.GetValueOrDefault(partitionKey));
            if (_leases.TryGetValue(partitionKey, out var held) && held.Id <= upTo)
            {
                _leases.TryRemove(partitionKey, out _);
                ended = held;
            }
        }
        if (ended is null) return ([], []);
        PauseAsking(partitionKey);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(partitionKey);
        return ended.EndForReclaim(hold => _ = ReleaseReportedAsync(lockGrain, hold.Token));
    }

    private async Task ReleaseReportedAsync(IPartitionLockGrain lockGrain, long token)
    {
        try
        {
            await lockGrain.ReleaseAsync(token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // The new activation ends the grant by its expiry instead.
            LogAskFailed(logger, lockGrain.GetPrimaryKeyString(), ex.GetType().Name, ex.Message);
        }
    }

    /// <summary>Drops a lease end's answer once no grain can still be asking for it (two lease lengths after it).</summary>
    private async Task ForgetEndAsync(string partitionKey, long id, Task<WriteLeaseReturn> returning)
    {
        try { await returning.ConfigureAwait(false); }
        catch (Exception) { /* the answer is an error either way */ }
        await Task.Delay(Length * 2, time).ConfigureAwait(false);
        lock (_gate)
        {
            if (_ends.TryGetValue(partitionKey, out var end) && end.Id == id) _ends.Remove(partitionKey);
        }
    }

    private void RenewIfDue(Lease lease)
    {
        lease.TryStartRenewal(time.GetUtcNow(), Length, () => RenewAsync(lease));
    }

    private async Task RenewAsync(Lease lease)
    {
        try
        {
            var expires = await grains.GetGrain<IPartitionLockGrain>(lease.Key)
                .RenewWriteLeaseAsync(lease.Id, Length).ConfigureAwait(false);
            if (expires is { } e) lease.Extend(e);
            else lease.Lapse();
        }
        catch (Exception ex)
        {
            // The next use tries again; the lease runs out by itself if the grain stays unreachable.
            LogAskFailed(logger, lease.Key, ex.GetType().Name, ex.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Partition {Partition}: write lease of timestamps {First}-{Last} taken")]
    private static partial void LogGranted(ILogger logger, string partition, long first, long last);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Partition {Partition}: write lease {Id} ended, {Pending} versions pending, {Runs} committed runs handed back")]
    private static partial void LogEnded(ILogger logger, string partition, long id, int pending, int runs);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Partition {Partition}: asking for or renewing a write lease failed ({Kind}: {Error})")]
    private static partial void LogAskFailed(ILogger logger, string partition, string kind, string error);
}
