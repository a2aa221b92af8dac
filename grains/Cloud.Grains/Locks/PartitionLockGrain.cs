using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.RaidWorkers;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Cloud.Grains.Locks;

/// <summary>
/// The partition lock manager of one (volume, partition). Reentrant: a waiting <see cref="AcquireAsync"/> awaits a
/// TaskCompletionSource, so the grain's scheduler keeps serving releases, commits and other requests meanwhile.
/// Every state change happens between awaits, so the interleaving is safe. The clock reservation is grain state in
/// <see cref="CloudGrainStorage.Name"/>: timestamps and fencing tokens are handed out only from a range whose
/// reservation was durably written, and a reservation write refused for a stale ETag (another activation wrote the
/// clock) or failed ends this activation without widening the range.
/// Holders and pending versions live in memory only. An activation that follows an earlier one (its silo died, or it
/// was deactivated) first reclaims them from every live silo (<see cref="ReclaimAsync"/>), before it serves any call.
/// </summary>
/// <remarks>
/// Silos wait for locks in slices (<see cref="LockRequest.MaxWait"/>, <see cref="HeldLocks.WaitSlice"/>), never for
/// long inside one call. When a silo dies, Orleans deactivates every activation whose grain-directory entry the dead
/// silo kept, also on the survivors, and a deactivation first waits for every request the activation is running.
/// A request parked here until a release or a commit arrives would hold that deactivation, and every call queued
/// behind it (timestamps, releases, commits, reads), until it ended by itself: the releases it waits for are among
/// the queued calls, so it ended only when a lease or the re-delegation timeout did, 30 s to 2 min after the kill.
/// A slice ends within <see cref="LockRequest.MaxWait"/>, and the queued calls then go to the next activation.
/// </remarks>
[Reentrant]
[Delegation.ScoredPlacement]
internal sealed partial class PartitionLockGrain(
    [PersistentState(CloudGrainStorage.ClockState, CloudGrainStorage.Name)] IPersistentState<PartitionClockState> clock,
    IClusterMembershipService membership,
    IOptions<CloudOptions> options,
    TimeProvider time,
    ILogger<PartitionLockGrain> logger) : Grain, IPartitionLockGrain
{
    /// <summary>
    /// How long a reactivating grain waits for one silo's claims. A silo that does not answer in time is taken to hold
    /// the whole partition exclusively for one lock lease (or until membership declares it dead), since it may be
    /// writing under a grant this activation cannot see.
    /// </summary>
    public static readonly TimeSpan ReclaimTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Bound on waiters, so a stuck holder cannot make the grain grow without limit.</summary>
    public const int MaxWaiters = 100_000;

    /// <summary>Bound on concurrently pending (timestamped, not yet settled) versions.</summary>
    public const int MaxPending = 1_000_000;

    /// <summary>Longest <see cref="LockRequest.MaxWait"/> a call may ask for.</summary>
    public static readonly TimeSpan MaxWaitSlice = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A sliced wait whose caller has not asked again for this long was given up (its silo died, or its call failed):
    /// it leaves the queue, and a grant it never collected is taken back, so that it holds up no one behind it.
    /// </summary>
    public static readonly TimeSpan AbandonedWaitAfter = TimeSpan.FromSeconds(5);

    private readonly CloudOptions _options = options.Value;
    private readonly List<Holder> _holders = [];
    private readonly LinkedList<Waiter> _waiters = new();
    private readonly Dictionary<Guid, Waiter> _slicedWaits = [];
    private readonly Dictionary<long, Pending> _pending = [];
    private readonly List<PendingWait> _pendingWaits = [];
    private readonly Dictionary<long, long> _committed = [];
    private long _next;
    private long _reservedUpTo;
    private Task? _reserving;
    private string? _activeTarget;
    private string? _previousTarget;
    private long _lastTimestamp;
    private long _activationFloor;

    /// <summary>
    /// The newest pending version this activation stopped tracking without its settlement (its first server died, or
    /// it outlived the re-delegation timeout): its copy may still be queued at a live target, unknown here.
    /// </summary>
    private long _forgottenPendingMax;

    /// <summary>
    /// The read leases given on this partition, per holder silo: the newest grant's token and its expiry. Given only
    /// while nothing is pending or locked for writing; ended before any timestamp or exclusive lock is handed out.
    /// </summary>
    private readonly Dictionary<string, (long UpTo, DateTimeOffset Expires)> _readLeases = [];

    /// <summary>Calls that are about to make a version pending or take an exclusive lock: no lease is given meanwhile.</summary>
    private int _leaseBlockers;

    /// <summary>
    /// The write lease given on this partition (<see cref="WriteLeases"/>), if any: its holder hands out the timestamps
    /// of its range and takes the stripe locks itself until this grain ends the lease.
    /// </summary>
    private WriteLeaseState? _writeLease;

    /// <summary>The end of <see cref="_writeLease"/> in progress, shared by every call that waits for it.</summary>
    private Task? _endingWriteLease;

    /// <summary>Calls that are about to hand something of the partition out: no write lease is given meanwhile.</summary>
    private int _writeLeaseBlockers;

    /// <summary>Versions of the lease being ended that were settled here before its pending versions came back.</summary>
    private readonly HashSet<long> _settledDuringEnd = [];

    /// <summary>Completed when a version settles, a lock is given back or a call ends (a lease request waits on it).</summary>
    private TaskCompletionSource? _changed;

    /// <summary>Timestamps one write lease covers.</summary>
    public const long WriteLeaseTimestamps = 1L << 16;

    private sealed record WriteLeaseState(
        string HolderSilo, string HolderName, long Id, long First, long Last, DateTimeOffset Expires);

    /// <summary>When the silos were last asked for the versions reads wait on (<see cref="CheckOrphans"/>).</summary>
    private DateTimeOffset _orphansChecked;

    /// <summary>The orphan check running, if any.</summary>
    private Task? _orphanCheck;

    /// <summary>When a read held up by a pending version was last reported.</summary>
    private DateTimeOffset _longWaitReported;
    private readonly List<(long First, long Last)> _uncertain = [];
    private bool _allUncertain;

    /// <summary>Stripe ranges remembered as uncertain before the whole partition is treated as uncertain.</summary>
    public const int MaxUncertainRanges = 64;
    private string Key => this.GetPrimaryKeyString();

    private sealed record Holder(long Token, long First, long Last, LockMode Mode, string Silo, DateTimeOffset Expires);

    /// <summary>A queued lock request; a sliced one is also kept by its wait id until its grant is collected.</summary>
    private sealed class Waiter(LockRequest request, long pendingBelow, DateTimeOffset now)
    {
        public LockRequest Request { get; } = request;
        public TaskCompletionSource<LockGrant> Completion { get; } =
            new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The pending-versions bound the request waited for (0 when it waits for none).</summary>
        public long PendingBelow { get; } = pendingBelow;

        /// <summary>A call is waiting on this waiter now.</summary>
        public bool Asking { get; set; }

        /// <summary>When the last call on this waiter ended.</summary>
        public DateTimeOffset LastAsked { get; set; } = now;
    }

    private sealed record Pending(long First, long Last, string FirstServer, DateTimeOffset Registered);

    private sealed record PendingWait(long First, long Last, long Below, TaskCompletionSource Completion);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // Start above everything an earlier activation may have handed out, then reserve the next range before use.
        var reserved = clock.State.ReservedUpTo;
        _next = reserved + 1;
        _reservedUpTo = reserved;
        // Every timestamp an earlier activation handed out (and so every version it let reach disk) is below this.
        _activationFloor = _next;
        this.RegisterGrainTimer(
            CheckLeasesAsync,
            new GrainTimerCreationOptions(_options.LeaseCheckPeriod, _options.LeaseCheckPeriod) { Interleave = true });
        // A stored clock means an earlier activation existed, and may have died with grants and pending versions that
        // live silos still act on. The first activation ever has nothing to reclaim.
        if (clock.RecordExists) await ReclaimAsync();
    }

    /// <summary>
    /// Takes back from every live silo the grants it holds here and the versions its first server holds uncommitted:
    /// without them this activation would grant a stripe that a surviving RAID worker is still writing (two writers
    /// of one stripe: lost blocks and wrong parity), and let a read miss a write that was acknowledged but is not yet
    /// on disk. A silo that cannot answer is held to own the whole partition until its lease would have ended.
    /// </summary>
    private async Task ReclaimAsync()
    {
        var now = time.GetUtcNow();
        var members = membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status is SiloStatus.Active or SiloStatus.ShuttingDown or SiloStatus.Stopping)
            .ToList();
        var answers = await Task.WhenAll(members.Select(AskAsync));
        int grants = 0, versions = 0, unanswered = 0;
        foreach (var (member, claims) in answers)
        {
            var holderSilo = member.SiloAddress.ToParsableString();
            if (claims is null)
            {
                unanswered++;
                _holders.Add(
                    new Holder(-unanswered, 0, long.MaxValue, LockMode.Exclusive, holderSilo, now + _options.LockLease));
                continue;
            }
            foreach (var g in claims.Grants)
            {
                _holders.Add(
                    new Holder(g.FencingToken, g.FirstStripe, g.LastStripe, g.Mode, holderSilo, g.ExpiresUtc));
                grants++;
            }
            foreach (var v in claims.Versions)
            {
                if (_pending.TryAdd(v.Timestamp, new Pending(v.FirstStripe, v.LastStripe, holderSilo, now))) versions++;
            }
        }
        LogReclaimed(logger, Key, members.Count, grants, versions, unanswered);
    }

    private async Task<(ClusterMember Member, PartitionClaims? Claims)> AskAsync(ClusterMember member)
    {
        try
        {
            var claims = await GrainFactory.GetGrain<IRaidWorkerGrain>(member.Name).ReclaimAsync(Key, _activationFloor)
                .WaitAsync(ReclaimTimeout);
            return (member, claims);
        }
        catch (Exception ex)
        {
            LogReclaimFailed(logger, Key, member.SiloAddress, ex.GetType().Name);
            return (member, null);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Partition {Partition} activated again: asked {Silos} silos, reclaimed {Grants} locks and {Versions} pending versions; {Unanswered} silos did not answer")]
    private static partial void LogReclaimed(
        ILogger logger, string partition, int silos, int grants, int versions, int unanswered);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Partition {Partition}: silo {Silo} did not end its read lease ({Error}); waiting for the lease to expire")]
    private static partial void LogLeaseEndFailed(ILogger logger, string partition, string silo, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Partition {Partition}: silo {Silo} did not report its claims ({Error}); it holds the partition until its lease would end")]
    private static partial void LogReclaimFailed(ILogger logger, string partition, SiloAddress silo, string error);

    /// <summary>
    /// Makes sure the next timestamp is covered by a persisted reservation, so that taking one needs no await.
    /// </summary>
    private async ValueTask EnsureReservedAsync()
    {
        while (_next > _reservedUpTo)
        {
            // Interleaved requests share one write: two writes in flight would carry the same ETag, and the second
            // would be refused as stale although no other activation wrote.
            if (_reserving is null || _reserving.IsCompleted) _reserving = ReserveAsync();
            await _reserving;
        }
    }

    /// <summary>Durably reserves the next range, and only then lets <see cref="Take"/> use it.</summary>
    private async Task ReserveAsync()
    {
        var reserve = _reservedUpTo + PartitionClockStore.ReservationSize;
        clock.State.ReservedUpTo = reserve;
        try
        {
            await clock.WriteStateAsync();
        }
        catch (Exception ex)
        {
            clock.State.ReservedUpTo = _reservedUpTo;
            // The stored reservation is no longer known here (another activation may hand out timestamps above it),
            // so a fresh activation must read it again; this one hands out nothing beyond what it reserved.
            DeactivateOnIdle();
            throw new CloudStorageException(
                $"partition {Key}: reserving timestamps up to {reserve} was not saved ({ex.GetType().Name}: {ex.Message}); retry");
        }
        _reservedUpTo = reserve;
    }

    private long Take()
    {
        if (_next > _reservedUpTo) throw new InvalidOperationException("timestamp taken without a reservation");
        return _next++;
    }

    public async Task<TimestampGrant> NextTimestampAsync(long firstStripe, long lastStripe, string firstServerSilo)
    {
        if (lastStripe < firstStripe)
            throw new CloudRequestException($"stripe range {firstStripe}-{lastStripe} is empty");
        if (_pending.Count >= MaxPending)
            throw new CloudRequestException($"partition {Key} has {MaxPending} pending writes; retry later");
        _leaseBlockers++;
        _writeLeaseBlockers++;
        try
        {
            // A read under a lease does not wait for pending versions: every lease ends before this one exists. A
            // write lease hands out timestamps of its own: it ends (its pending versions coming back here) first.
            await EndWriteLeaseAsync();
            await EndReadLeasesAsync();
            await EnsureReservedAsync();
            var ts = Take();
            _pending[ts] = new Pending(firstStripe, lastStripe, firstServerSilo, time.GetUtcNow());
            _lastTimestamp = ts;
            var targetHoldsCopy = _activeTarget is not null && _pending.Count > 1;
            return new TimestampGrant(ts, _activeTarget, targetHoldsCopy);
        }
        finally
        {
            _leaseBlockers--;
            _writeLeaseBlockers--;
            Changed();
        }
    }

    public async Task<LockGrant> AcquireAsync(LockRequest request)
    {
        CheckRequest(request);
        _writeLeaseBlockers++;
        try
        {
            // A write lease's holder takes its locks in its own memory: the lease ends before any lock is granted here.
            await EndWriteLeaseAsync();
            if (request.Mode != LockMode.Exclusive) return await AcquireCoreAsync(request);
            _leaseBlockers++;
            try
            {
                // No writer runs beside a read under a lease: every lease ends (its reads done) before the lock is
                // asked.
                await EndReadLeasesAsync();
                return await AcquireCoreAsync(request);
            }
            finally
            {
                _leaseBlockers--;
            }
        }
        finally
        {
            _writeLeaseBlockers--;
            Changed();
        }
    }

    /// <summary>
    /// Ends the write lease, if one is given: its holder's RAID worker stops new work under it, waits for the batches
    /// and reads running under it and returns the pending versions, commits and uncertain ranges, which join this
    /// grain's own. A holder that does not answer is waited for until the lease expires or the membership declares it
    /// dead; the whole partition is then uncertain (writers check the block timestamps on disk) and every version of
    /// the lease's range counts as forgotten. Callers hold <see cref="_writeLeaseBlockers"/>, so no lease is given
    /// meanwhile.
    /// </summary>
    private async Task EndWriteLeaseAsync()
    {
        while (_writeLease is { } lease)
        {
            if (_endingWriteLease is null || _endingWriteLease.IsCompleted)
                _endingWriteLease = EndWriteLeaseCoreAsync(lease);
            await _endingWriteLease;
        }
    }

    private async Task EndWriteLeaseCoreAsync(WriteLeaseState lease)
    {
        WriteLeaseReturn? returned = null;
        while (returned is null)
        {
            var member = membership.CurrentSnapshot.Members.Values
                .FirstOrDefault(m => m.SiloAddress.ToParsableString() == lease.HolderSilo);
            if (member is null || member.Status == SiloStatus.Dead) break;
            try
            {
                returned = await GrainFactory.GetGrain<IRaidWorkerGrain>(member.Name)
                    .EndWriteLeaseAsync(Key, lease.Id).WaitAsync(ReclaimTimeout);
            }
            catch (Exception ex)
            {
                LogLeaseEndFailed(logger, Key, lease.HolderSilo, ex.GetType().Name);
                // The holder may still write under it: ask again until it expires (renewals are refused meanwhile).
                if (_writeLease is not { } current || current.Expires <= time.GetUtcNow()) break;
                await Task.Delay(TimeSpan.FromMilliseconds(100), time);
            }
        }
        if (_writeLease?.Id != lease.Id) return;
        var now = time.GetUtcNow();
        if (returned is null)
        {
            MarkUncertain(new Holder(0, 0, long.MaxValue, LockMode.Exclusive, lease.HolderSilo, now));
            _forgottenPendingMax = Math.Max(_forgottenPendingMax, lease.Last);
        }
        else
        {
            foreach (var c in returned.Committed)
            {
                for (var b = c.FirstBlock; b < c.FirstBlock + c.BlockCount; b++)
                    if (_committed.GetValueOrDefault(b) < c.Timestamp) _committed[b] = c.Timestamp;
            }
            foreach (var v in returned.Pending)
            {
                if (!_settledDuringEnd.Contains(v.Timestamp))
                    _pending[v.Timestamp] = new Pending(v.FirstStripe, v.LastStripe, lease.HolderSilo, now);
            }
            foreach (var u in returned.Uncertain)
                MarkUncertain(new Holder(0, u.FirstStripe, u.LastStripe, LockMode.Exclusive, lease.HolderSilo, now));
        }
        _settledDuringEnd.Clear();
        _writeLease = null;
    }

    /// <summary>Wakes a lease request waiting for the partition to go quiet.</summary>
    private void Changed()
    {
        var changed = _changed;
        _changed = null;
        changed?.TrySetResult();
    }

    public async Task<WriteLeaseGrant?> TryLeaseWritesAsync(string holderSilo, string holderName, TimeSpan length)
    {
        if (length <= TimeSpan.Zero || length > TimeSpan.FromMinutes(10))
            throw new CloudRequestException($"write lease {length} is outside 0-10 min");
        var deadline = time.GetUtcNow() + WriteLeases.QuietWait;
        while (true)
        {
            if (_writeLease is { } held)
                return held.HolderSilo == holderSilo
                    ? new WriteLeaseGrant(held.Id, held.First, held.Last, held.Expires)
                    : null;
            if (!OnlyActive(holderSilo, holderName)) return null;
            if (!Quiet())
            {
                // The caller's own writes and batches still run: wait for them, not for anyone else's.
                var left = deadline - time.GetUtcNow();
                if (left <= TimeSpan.Zero) return null;
                _changed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                try { await _changed.Task.WaitAsync(left, time); }
                catch (TimeoutException) { return null; }
                continue;
            }
            if (_readLeases.Count > 0)
            {
                _leaseBlockers++;
                try { await EndReadLeasesAsync(); }
                finally { _leaseBlockers--; }
                continue;
            }
            if (_next + WriteLeaseTimestamps - 1 > _reservedUpTo)
            {
                if (_reserving is null || _reserving.IsCompleted) _reserving = ReserveAsync();
                await _reserving;
                continue;
            }
            break;
        }
        // From the checks above to here, no await: nothing was handed out in between.
        var first = _next;
        _next += WriteLeaseTimestamps;
        var lease = new WriteLeaseState(
            holderSilo, holderName, first, first, first + WriteLeaseTimestamps - 1, time.GetUtcNow() + length);
        _writeLease = lease;
        _lastTimestamp = lease.Last;
        if (_activeTarget != holderName)
        {
            _previousTarget = _activeTarget;
            _activeTarget = holderName;
        }
        return new WriteLeaseGrant(lease.Id, lease.First, lease.Last, lease.Expires);
    }

    public Task<DateTimeOffset?> RenewWriteLeaseAsync(long id, TimeSpan length)
    {
        if (_writeLease is not { } lease || lease.Id != id) return Task.FromResult<DateTimeOffset?>(null);
        // A lease being ended is not extended: its end waits for its expiry if the holder does not answer.
        if (_endingWriteLease is { IsCompleted: false }) return Task.FromResult<DateTimeOffset?>(lease.Expires);
        var expires = time.GetUtcNow() + length;
        if (expires > lease.Expires) _writeLease = lease with { Expires = expires };
        return Task.FromResult<DateTimeOffset?>(_writeLease.Expires);
    }

    /// <summary>Nothing is pending, locked, waited for or about to be handed out.</summary>
    private bool Quiet() =>
        _pending.Count == 0 && _holders.Count == 0 && _waiters.Count == 0 && _slicedWaits.Count == 0
        && _pendingWaits.Count == 0 && _leaseBlockers == 0 && _writeLeaseBlockers == 0;

    /// <summary>
    /// Whether only <paramref name="holderSilo"/> writes or reads the partition now (its pending versions, locks and
    /// waits may still end), it is the partition's target or there is none, and nothing in it is uncertain.
    /// </summary>
    private bool OnlyActive(string holderSilo, string holderName)
    {
        if (_allUncertain || _uncertain.Count > 0) return false;
        if (_activeTarget is not null && _activeTarget != holderName) return false;
        foreach (var p in _pending.Values)
            if (p.FirstServer != holderSilo) return false;
        foreach (var h in _holders)
            if (h.Silo != holderSilo) return false;
        foreach (var w in _waiters)
            if (w.Request.HolderSilo != holderSilo) return false;
        foreach (var silo in _readLeases.Keys)
            if (silo != holderSilo) return false;
        return true;
    }

    /// <summary>
    /// Ends every read lease on this partition: each holder's RAID worker is told (<see cref="ReadLeases"/>) and answers
    /// once the reads under it are done. A holder that does not answer is waited for until its lease expires, or until
    /// the membership declares it dead. Callers hold <see cref="_leaseBlockers"/>, so no lease is given meanwhile.
    /// </summary>
    private async Task EndReadLeasesAsync()
    {
        while (_readLeases.Count > 0)
        {
            var leases = _readLeases.ToList();
            await Task.WhenAll(leases.Select(l => EndReadLeaseAsync(l.Key, l.Value.UpTo, l.Value.Expires)));
        }
    }

    private async Task EndReadLeaseAsync(string holderSilo, long upTo, DateTimeOffset expires)
    {
        var snapshot = membership.CurrentSnapshot;
        var member = snapshot.Members.Values.FirstOrDefault(m => m.SiloAddress.ToParsableString() == holderSilo);
        // Asked even after the expiry: a read that entered the lease before its margin may still be running.
        if (member is not null && member.Status != SiloStatus.Dead)
        {
            try
            {
                await GrainFactory.GetGrain<IRaidWorkerGrain>(member.Name).RevokeReadLeaseAsync(Key, upTo)
                    .WaitAsync(ReclaimTimeout);
            }
            catch (Exception ex)
            {
                LogLeaseEndFailed(logger, Key, holderSilo, ex.GetType().Name);
                // The holder may still read under it: wait for its expiry, or for the membership to declare it dead.
                while (expires > time.GetUtcNow() && !IsDead(membership.CurrentSnapshot, holderSilo))
                    await Task.Delay(TimeSpan.FromMilliseconds(100), time);
            }
        }
        if (_readLeases.TryGetValue(holderSilo, out var current) && current.UpTo <= upTo) _readLeases.Remove(holderSilo);
    }

    /// <summary>
    /// Whether a read lease may be given now: nothing pending, no exclusive holder or waiter, and no call about to add
    /// one.
    /// </summary>
    private bool MayLeaseReads()
    {
        if (_leaseBlockers > 0 || _pending.Count > 0) return false;
        foreach (var h in _holders)
            if (h.Mode == LockMode.Exclusive) return false;
        foreach (var w in _waiters)
            if (w.Request.Mode == LockMode.Exclusive) return false;
        return true;
    }

    private async Task<LockGrant> AcquireCoreAsync(LockRequest request)
    {
        var sliced = request.MaxWait > TimeSpan.Zero;
        if (sliced && _slicedWaits.TryGetValue(request.WaitId, out var known)) return await AwaitGrantAsync(known);
        var below = 0L;
        if (request.WaitForPendingWrites)
        {
            // Wait for every version timestamped before this read arrived (later ones are concurrent with it), or
            // before the caller's own timestamp when it names one: never for a version not yet handed out. A sliced
            // wait that asks again names the bound of its first call.
            below = request.PendingBelow == 0 ? _next : Math.Min(request.PendingBelow, _next);
            if (AnyPending(request.FirstStripe, request.LastStripe, below))
                await AwaitPendingAsync(request, below);
        }
        if (_waiters.Count >= MaxWaiters)
            throw new CloudRequestException($"partition {Key} has {MaxWaiters} lock waiters; retry later");
        // Reserve before deciding, so the decision and the grant happen in one turn with no await between them.
        await EnsureReservedAsync();
        if (CanGrant(request, null))
        {
            var grant = Grant(request);
            if (!request.WantReadLease || request.Mode != LockMode.Shared || !MayLeaseReads()) return grant;
            _readLeases[request.HolderSilo] = (grant.FencingToken, grant.ExpiresUtc);
            return grant with { ReadLeaseExpiresUtc = grant.ExpiresUtc };
        }
        var waiter = new Waiter(request, below, time.GetUtcNow());
        _waiters.AddLast(waiter);
        if (!sliced) return await waiter.Completion.Task;
        _slicedWaits[request.WaitId] = waiter;
        return await AwaitGrantAsync(waiter);
    }

    private void CheckRequest(LockRequest request)
    {
        if (request.LastStripe < request.FirstStripe)
            throw new CloudRequestException($"stripe range {request.FirstStripe}-{request.LastStripe} is empty");
        if (request.Lease <= TimeSpan.Zero || request.Lease > TimeSpan.FromMinutes(10))
            throw new CloudRequestException($"lease {request.Lease} is outside 0-10 min");
        if (request.PendingBelow < 0 || (request.PendingBelow != 0 && !request.WaitForPendingWrites))
            throw new CloudRequestException(
                $"pending-below {request.PendingBelow} is not allowed; use 0, or a timestamp with WaitForPendingWrites");
        if (request.MaxWait < TimeSpan.Zero || request.MaxWait > MaxWaitSlice)
            throw new CloudRequestException(
                $"max wait {request.MaxWait} is outside 0-{MaxWaitSlice.TotalSeconds} s (0 waits until granted)");
        if (request.MaxWait > TimeSpan.Zero && request.WaitId == Guid.Empty)
            throw new CloudRequestException("a wait bounded by max wait needs a wait id to ask again with");
    }

    /// <summary>
    /// Waits until no version below <paramref name="below"/> is pending on the request's stripes; a sliced request
    /// waits one slice at most.
    /// </summary>
    private async Task AwaitPendingAsync(LockRequest request, long below)
    {
        var wait = new PendingWait(
            request.FirstStripe,
            request.LastStripe,
            below,
            new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        _pendingWaits.Add(wait);
        if (request.MaxWait == TimeSpan.Zero)
        {
            await wait.Completion.Task;
            return;
        }
        try
        {
            await wait.Completion.Task.WaitAsync(request.MaxWait, time);
        }
        catch (TimeoutException)
        {
            _pendingWaits.Remove(wait);
            throw new LockWaitSliceEndedException(request.WaitId, below, Key);
        }
    }

    /// <summary>
    /// Waits one slice for a sliced waiter's grant; the grant is handed out once, to the call that sees it.
    /// </summary>
    private async Task<LockGrant> AwaitGrantAsync(Waiter waiter)
    {
        var request = waiter.Request;
        waiter.Asking = true;
        try
        {
            var grant = await waiter.Completion.Task.WaitAsync(request.MaxWait, time);
            _slicedWaits.Remove(request.WaitId);
            return grant;
        }
        catch (TimeoutException)
        {
            throw new LockWaitSliceEndedException(request.WaitId, waiter.PendingBelow, Key);
        }
        finally
        {
            waiter.Asking = false;
            waiter.LastAsked = time.GetUtcNow();
        }
    }

    private bool AnyPending(long first, long last, long below)
    {
        foreach (var (ts, p) in _pending)
            if (ts < below && p.First <= last && first <= p.Last) return true;
        return false;
    }

    private static bool Overlaps(long a0, long a1, long b0, long b1) => a0 <= b1 && b0 <= a1;

    private bool CanGrant(LockRequest r, LinkedListNode<Waiter>? self)
    {
        foreach (var h in _holders)
            if (Overlaps(h.First, h.Last, r.FirstStripe, r.LastStripe)
                && (h.Mode == LockMode.Exclusive || r.Mode == LockMode.Exclusive))
                return false;
        // FIFO per stripe: an earlier waiter on an overlapping stripe goes first (unless both only read).
        for (var n = _waiters.First; n is not null && n != self; n = n.Next)
        {
            var w = n.Value.Request;
            if (Overlaps(w.FirstStripe, w.LastStripe, r.FirstStripe, r.LastStripe)
                && (w.Mode == LockMode.Exclusive || r.Mode == LockMode.Exclusive))
                return false;
        }
        return true;
    }

    private LockGrant Grant(LockRequest r)
    {
        var token = Take();
        var expires = time.GetUtcNow() + r.Lease;
        _holders.Add(new Holder(token, r.FirstStripe, r.LastStripe, r.Mode, r.HolderSilo, expires));
        return new LockGrant(token, r.FirstStripe, r.LastStripe, r.Mode, expires);
    }

    private async Task GrantWaitersAsync()
    {
        // One waiter per timestamp at most: reserve enough first so the scan below runs in one turn.
        if (_next + _waiters.Count > _reservedUpTo) await EnsureReservedAsync();
        var n = _waiters.First;
        while (n is not null && _next <= _reservedUpTo)
        {
            var next = n.Next;
            if (CanGrant(n.Value.Request, n))
            {
                _waiters.Remove(n);
                n.Value.Completion.TrySetResult(Grant(n.Value.Request));
            }
            n = next;
        }
    }

    public Task<LockGrant> RenewAsync(long fencingToken, TimeSpan lease)
    {
        var i = _holders.FindIndex(h => h.Token == fencingToken);
        if (i < 0) throw new LockFencedException(fencingToken, Key);
        var renewed = _holders[i] with { Expires = time.GetUtcNow() + lease };
        _holders[i] = renewed;
        return Task.FromResult(
            new LockGrant(renewed.Token, renewed.First, renewed.Last, renewed.Mode, renewed.Expires));
    }

    public async Task ReleaseAsync(long fencingToken)
    {
        var i = _holders.FindIndex(h => h.Token == fencingToken);
        if (i < 0) return;
        // A writer releasing without a commit may have written some blocks before it failed.
        if (_holders[i].Mode == LockMode.Exclusive) MarkUncertain(_holders[i]);
        _holders.RemoveAt(i);
        await GrantWaitersAsync();
        Changed();
    }

    public Task ReleaseOneWayAsync(long fencingToken) => ReleaseAsync(fencingToken);

    /// <summary>
    /// Notes stripes whose exclusive holder ended without committing: it may have put versions on disk that the
    /// committed map does not know, so writers of these stripes must check the block timestamps on disk. Ranges that
    /// overlap or touch are kept as one, so that a run of small neighbouring holders (a step-wise job that failed, a
    /// dead writer's batches) does not spend the bound and make the whole partition uncertain.
    /// </summary>
    private void MarkUncertain(Holder h)
    {
        if (_allUncertain) return;
        var (first, last) = (h.First, h.Last);
        for (var i = _uncertain.Count - 1; i >= 0; i--)
        {
            var u = _uncertain[i];
            if (u.First > last + 1 || first > u.Last + 1) continue;
            first = Math.Min(first, u.First);
            last = Math.Max(last, u.Last);
            _uncertain.RemoveAt(i);
        }
        if (_uncertain.Count >= MaxUncertainRanges) _allUncertain = true;
        else _uncertain.Add((first, last));
    }

    private bool IsUncertain(long first, long last) =>
        _allUncertain || _uncertain.Exists(u => Overlaps(u.First, u.Last, first, last));

    public async Task<WriteLockGrant> AcquireForWriteAsync(
        LockRequest request,
        long firstBlock,
        int blockCount,
        ImmutableArray<long> batchTimestamps)
    {
        if (request.Mode != LockMode.Exclusive)
            throw new CloudRequestException($"a write lock must be exclusive, not {request.Mode}");
        if (batchTimestamps.IsDefaultOrEmpty)
            throw new CloudRequestException("a write lock needs the batch's timestamps; none were given");
        var grant = await AcquireAsync(request);
        var validation = await ValidateAsync(grant.FencingToken, firstBlock, blockCount, batchTimestamps);
        // Invariant 3 needs each block's newest version known. This activation's commits are all in the committed
        // map; an earlier activation's are all below the floor, so they cannot beat a batch above it; a holder that
        // ended uncommitted may have left newer blocks on disk. Outside those proofs the writer asks the disk.
        var diskCheckNeeded = batchTimestamps.Min() < _activationFloor
            || IsUncertain(request.FirstStripe, request.LastStripe);
        return new WriteLockGrant(grant, validation, diskCheckNeeded);
    }

    public Task<ValidationResult> ValidateAsync(
        long fencingToken,
        long firstBlock,
        int blockCount,
        ImmutableArray<long> batchTimestamps)
    {
        var holder = _holders.Find(h => h.Token == fencingToken);
        if (holder is null || holder.Mode != LockMode.Exclusive || holder.Expires < time.GetUtcNow())
            throw new LockFencedException(fencingToken, Key);
        var committed = new long[blockCount];
        for (var i = 0; i < blockCount; i++)
            committed[i] = _committed.GetValueOrDefault(firstBlock + i);
        var newest = batchTimestamps.IsDefaultOrEmpty ? 0 : batchTimestamps.Max();
        var mergeSafe = MergeMayRelabel(batchTimestamps);
        foreach (var (ts, p) in _pending)
        {
            if (ts < newest && Overlaps(p.First, p.Last, holder.First, holder.Last) && !batchTimestamps.Contains(ts))
            {
                mergeSafe = false;
                break;
            }
        }
        return Task.FromResult(new ValidationResult(ImmutableArray.Create(committed), mergeSafe));
    }

    /// <summary>
    /// A merged run stamps each of its blocks with the batch's newest timestamp, which is sound only if no version
    /// between a block's own and that newest one is still in flight: it would arrive later and be dropped as
    /// superseded, though acknowledged. This activation knows every version it handed out and still tracks, but not
    /// an earlier activation's in flight (the reclaim hears only of copies already held, not of those still being
    /// sent) nor those it stopped tracking, so a batch reaching below either bound is written version by version.
    /// </summary>
    private bool MergeMayRelabel(ImmutableArray<long> batchTimestamps)
    {
        if (batchTimestamps.IsDefaultOrEmpty) return true;
        var oldest = batchTimestamps.Min();
        return oldest >= _activationFloor && oldest > _forgottenPendingMax;
    }

    public async Task CommitAsync(
        long fencingToken,
        ImmutableArray<BlockCommit> written,
        ImmutableArray<long> settledTimestamps,
        string targetSilo,
        bool release)
    {
        var holder = _holders.Find(h => h.Token == fencingToken);
        if (holder is null) throw new LockFencedException(fencingToken, Key);
        foreach (var c in written)
        {
            for (var b = c.FirstBlock; b < c.FirstBlock + c.BlockCount; b++)
                if (_committed.GetValueOrDefault(b) < c.Timestamp) _committed[b] = c.Timestamp;
        }
        if (targetSilo != _activeTarget && written.Length > 0)
        {
            _previousTarget = _activeTarget;
            _activeTarget = targetSilo;
        }
        Settle(settledTimestamps);
        if (release && _holders.Remove(holder))
            await GrantWaitersAsync();
        Changed();
    }

    public Task SettleAsync(ImmutableArray<long> timestamps)
    {
        Settle(timestamps);
        return Task.CompletedTask;
    }

    private void Settle(ImmutableArray<long> timestamps)
    {
        if (timestamps.IsDefaultOrEmpty) return;
        var any = false;
        foreach (var ts in timestamps)
        {
            any |= _pending.Remove(ts);
            // A version of a write lease being ended, settled before the lease's pending versions came back here.
            if (_writeLease is { } lease && ts >= lease.First && ts <= lease.Last) _settledDuringEnd.Add(ts);
        }
        if (any) WakePendingWaits();
        Changed();
    }

    private void WakePendingWaits()
    {
        for (var i = _pendingWaits.Count - 1; i >= 0; i--)
        {
            var w = _pendingWaits[i];
            if (!AnyPending(w.First, w.Last, w.Below))
            {
                _pendingWaits.RemoveAt(i);
                w.Completion.TrySetResult();
            }
        }
    }

    public async Task SetTargetAsync(string targetSilo)
    {
        if (_writeLease is { } lease && lease.HolderName != targetSilo)
        {
            // Another silo now writes the partition's copies: they go through this grain, so the lease ends.
            _writeLeaseBlockers++;
            try { await EndWriteLeaseAsync(); }
            finally { _writeLeaseBlockers--; }
        }
        if (targetSilo != _activeTarget)
        {
            _previousTarget = _activeTarget;
            _activeTarget = targetSilo;
        }
    }

    public Task<PartitionControl> GetControlAsync() =>
        Task.FromResult(
            new PartitionControl(
                _activeTarget,
                _previousTarget,
                _lastTimestamp,
                _pending.Count,
                _holders.Count,
                _waiters.Count,
                _activationFloor));

    public async Task<ImmutableArray<long>> GetTimestampsAsync(long firstBlock, int blockCount)
    {
        _writeLeaseBlockers++;
        try { await EndWriteLeaseAsync(); }
        finally { _writeLeaseBlockers--; }
        var result = new long[blockCount];
        for (var i = 0; i < blockCount; i++) result[i] = _committed.GetValueOrDefault(firstBlock + i);
        return ImmutableArray.Create(result);
    }

    /// <summary>
    /// Ends leases that ran out or whose holder silo is dead, and pending versions whose first server is dead or gave
    /// up.
    /// </summary>
    private async Task CheckLeasesAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var snapshot = membership.CurrentSnapshot;
        if (_writeLease is { } lease && (lease.Expires < now || IsDead(snapshot, lease.HolderSilo)))
        {
            // Unused (its holder renews it while it writes) or its holder is gone: end it.
            _writeLeaseBlockers++;
            try { await EndWriteLeaseAsync(); }
            finally { _writeLeaseBlockers--; }
        }
        var removed = 0;
        for (var i = _holders.Count - 1; i >= 0; i--)
        {
            var h = _holders[i];
            if (h.Expires >= now && !IsDead(snapshot, h.Silo)) continue;
            if (h.Mode == LockMode.Exclusive) MarkUncertain(h);
            _holders.RemoveAt(i);
            removed++;
        }
        var abandoned = _pending
            .Where(
                p => IsDead(snapshot, p.Value.FirstServer) || now - p.Value.Registered > _options.RedelegationTimeout)
            .Select(p => p.Key).ToList();
        foreach (var ts in abandoned)
        {
            _pending.Remove(ts);
            _forgottenPendingMax = Math.Max(_forgottenPendingMax, ts);
        }
        if (abandoned.Count > 0) WakePendingWaits();
        CheckOrphans(now, snapshot);
        ReportLongPendingWait(now);
        removed += DropAbandonedWaits(now);
        if (removed > 0) await GrantWaitersAsync();
    }

    /// <summary>
    /// After this long, a version a read waits on is checked with the silo that took it (at most once per this period):
    /// see <see cref="CheckOrphans"/>.
    /// </summary>
    public static readonly TimeSpan OrphanCheckAfter = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Asks the live silos that took the versions a read has waited on for <see cref="OrphanCheckAfter"/> whether they
    /// still have them (<see cref="VersionsInFlight"/>), and stops tracking the ones they do not: an orphan (a grant
    /// whose answer was lost, a settle that failed or reached another activation) would otherwise hold the read until
    /// the re-delegation timeout, minutes after every write was done. An orphan that did reach a disk was committed
    /// under some activation; like any version given up on, it counts as forgotten, so no merge relabels across it.
    /// </summary>
    private void CheckOrphans(DateTimeOffset now, ClusterMembershipSnapshot snapshot)
    {
        if (_pendingWaits.Count == 0 || now - _orphansChecked < OrphanCheckAfter) return;
        if (_orphanCheck is { IsCompleted: false }) return;
        Dictionary<string, List<long>>? suspects = null;
        foreach (var (ts, p) in _pending)
        {
            if (now - p.Registered < OrphanCheckAfter
                || !_pendingWaits.Exists(w => ts < w.Below && Overlaps(p.First, p.Last, w.First, w.Last)))
                continue;
            var member = snapshot.Members.Values.FirstOrDefault(
                m => m.Status == SiloStatus.Active && m.SiloAddress.ToParsableString() == p.FirstServer);
            if (member is null) continue;
            suspects ??= [];
            if (!suspects.TryGetValue(member.Name, out var list)) suspects[member.Name] = list = [];
            list.Add(ts);
        }
        if (suspects is null) return;
        _orphansChecked = now;
        _orphanCheck = DropOrphansAsync(suspects);
    }

    private async Task DropOrphansAsync(Dictionary<string, List<long>> suspects)
    {
        foreach (var (siloName, asked) in suspects)
        {
            ImmutableArray<long> held;
            try
            {
                held = await GrainFactory.GetGrain<IRaidWorkerGrain>(siloName)
                    .VersionsInFlightAsync(Key, [.. asked]).WaitAsync(ReclaimTimeout);
            }
            catch (Exception ex)
            {
                // Unknown: keep waiting (the re-delegation timeout still ends them).
                LogOrphanCheckFailed(logger, Key, siloName, ex.GetType().Name);
                continue;
            }
            var dropped = 0;
            foreach (var ts in asked)
            {
                if (held.Contains(ts) || !_pending.Remove(ts)) continue;
                _forgottenPendingMax = Math.Max(_forgottenPendingMax, ts);
                dropped++;
            }
            if (dropped == 0) continue;
            LogOrphansDropped(logger, Key, dropped, siloName, asked.Min());
            WakePendingWaits();
            Changed();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Partition {Partition}: {Count} pending versions (oldest {Timestamp}) that silo {Silo} no longer has will not be waited for")]
    private static partial void LogOrphansDropped(ILogger logger, string partition, int count, string silo, long timestamp);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Partition {Partition}: asking silo {Silo} for its versions in flight failed ({Kind})")]
    private static partial void LogOrphanCheckFailed(ILogger logger, string partition, string silo, string kind);

    /// <summary>After this long, a read held up by a pending version is reported (at most once per this period).</summary>
    public static readonly TimeSpan LongPendingWait = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Names the oldest version a waiting read is held up by, once it has been pending for <see cref="LongPendingWait"/>:
    /// its first server and age say whose write never settled (a read that then times out leaves this line behind).
    /// </summary>
    private void ReportLongPendingWait(DateTimeOffset now)
    {
        if (_pendingWaits.Count == 0 || now - _longWaitReported < LongPendingWait) return;
        KeyValuePair<long, Pending>? oldest = null;
        foreach (var wait in _pendingWaits)
            foreach (var p in _pending)
                if (p.Key < wait.Below && p.Value.First <= wait.Last && wait.First <= p.Value.Last
                    && (oldest is null || p.Key < oldest.Value.Key))
                    oldest = p;
        if (oldest is not { } o || now - o.Value.Registered < LongPendingWait) return;
        _longWaitReported = now;
        LogLongPendingWait(
            logger, Key, _pendingWaits.Count, o.Key, o.Value.First, o.Value.Last, o.Value.FirstServer,
            (now - o.Value.Registered).TotalSeconds);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Partition {Partition}: {Waits} reads wait on pending versions; the oldest, {Timestamp} on stripes {First}-{Last} from first server {FirstServer}, has been pending {AgeSeconds:0.0} s")]
    private static partial void LogLongPendingWait(
        ILogger logger, string partition, int waits, long timestamp, long first, long last, string firstServer, double ageSeconds);

    /// <summary>
    /// Drops the sliced waits whose callers stopped asking: a queued one leaves the queue, and a grant nobody collected
    /// is taken back (no one wrote under it, since its token never left this grain). Returns how many were dropped.
    /// </summary>
    private int DropAbandonedWaits(DateTimeOffset now)
    {
        List<Guid>? dropped = null;
        foreach (var (id, w) in _slicedWaits)
            if (!w.Asking && now - w.LastAsked > AbandonedWaitAfter) (dropped ??= []).Add(id);
        if (dropped is null) return 0;
        foreach (var id in dropped)
        {
            var w = _slicedWaits[id];
            _slicedWaits.Remove(id);
            if (w.Completion.Task.IsCompletedSuccessfully)
                _holders.RemoveAll(h => h.Token == w.Completion.Task.Result.FencingToken);
            else
            {
                _waiters.Remove(w);
                w.Completion.TrySetCanceled();
            }
        }
        LogAbandonedWaits(logger, Key, dropped.Count);
        return dropped.Count;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Partition {Partition}: dropped {Count} lock waits whose callers stopped asking")]
    private static partial void LogAbandonedWaits(ILogger logger, string partition, int count);

    private static bool IsDead(ClusterMembershipSnapshot snapshot, string silo)
    {
        try
        {
            return snapshot.GetSiloStatus(SiloAddress.FromParsableString(silo)) == SiloStatus.Dead;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
