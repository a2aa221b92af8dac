using System.Collections.Concurrent;

namespace Cloud.Grains.Locks;

/// <summary>
/// The read leases this silo holds, one at most per partition. A partition-lock grain gives one with a shared lock
/// (<see cref="LockRequest.WantReadLease"/>) when nothing in the partition is pending or locked for writing; until it
/// ends, this silo reads the partition without calling the grain: no shared lock, no release. Before the grain hands
/// out a timestamp or an exclusive lock of the partition, to any silo, it ends every lease on it
/// (<see cref="RevokeAsync"/>, through this silo's RAID worker), which returns once the reads under the lease are done.
/// So a read that starts after a write was acknowledged finds no lease and goes to the grain, which makes it wait for
/// that write as before; and no writer of the partition runs beside a leased read.
/// </summary>
/// <remarks>
/// A lease is taken for ended a quarter of its length before the grain's expiry: a grain that cannot reach this silo
/// to end it waits for the expiry instead (hosts' clocks are trusted to that margin, as for lock leases). A grant that
/// arrives after its lease was ended (the end overtook the reply) is refused by id: every lease and every end names
/// the grant's fencing token, which grows across the grain's activations.
/// </remarks>
public sealed class ReadLeases(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Lease> _leases = new();
    private readonly Dictionary<string, long> _endedUpTo = [];
    private readonly Lock _gate = new();
    private long _leasedReads;

    /// <summary>A lease on one partition, with the reads running under it.</summary>
    public sealed class Lease(long id, DateTimeOffset expiresUtc)
    {
        private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Lock _sync = new();
        private int _reads;
        private bool _ended;

        /// <summary>The fencing token of the grant that gave (or last extended) the lease.</summary>
        public long Id { get; private set; } = id;

        /// <summary>The grain's expiry of the lease.</summary>
        public DateTimeOffset ExpiresUtc { get; private set; } = expiresUtc;

        internal bool TryEnter(DateTimeOffset usableUntil)
        {
            lock (_sync)
            {
                if (_ended || ExpiresUtc <= usableUntil) return false;
                _reads++;
                return true;
            }
        }

        internal void Exit()
        {
            lock (_sync)
            {
                if (--_reads == 0 && _ended) _drained.TrySetResult();
            }
        }

        /// <summary>Extends a live lease by a newer grant; false when the lease has ended.</summary>
        internal bool TryExtend(long id, DateTimeOffset expiresUtc)
        {
            lock (_sync)
            {
                if (_ended) return false;
                Id = Math.Max(Id, id);
                if (expiresUtc > ExpiresUtc) ExpiresUtc = expiresUtc;
                return true;
            }
        }

        /// <summary>Ends the lease; the task completes once no read runs under it.</summary>
        internal Task End()
        {
            lock (_sync)
            {
                _ended = true;
                if (_reads == 0) _drained.TrySetResult();
            }
            return _drained.Task;
        }
    }

    /// <summary>Reads served under a lease since the silo started (for status and tests).</summary>
    public long LeasedReads => Interlocked.Read(ref _leasedReads);

    /// <summary>
    /// Enters this silo's lease on <paramref name="partitionKey"/> if it holds one with at least a quarter of
    /// <paramref name="length"/> left; the caller reads, then calls <see cref="Exit"/>.
    /// </summary>
    public bool TryEnter(string partitionKey, TimeSpan length, out Lease? lease)
    {
        if (_leases.TryGetValue(partitionKey, out lease) && lease.TryEnter(time.GetUtcNow() + length / 4))
        {
            Interlocked.Increment(ref _leasedReads);
            return true;
        }
        lease = null;
        return false;
    }

    /// <summary>Ends a read entered with <see cref="TryEnter"/>.</summary>
    public static void Exit(Lease lease) => lease.Exit();

    /// <summary>
    /// Records a lease the grain gave with a shared grant, unless an end naming its id (or a later one) came first.
    /// </summary>
    public void Add(string partitionKey, long id, DateTimeOffset expiresUtc)
    {
        lock (_gate)
        {
            if (_endedUpTo.TryGetValue(partitionKey, out var ended) && id <= ended) return;
            if (_leases.TryGetValue(partitionKey, out var held) && held.TryExtend(id, expiresUtc)) return;
            _leases[partitionKey] = new Lease(id, expiresUtc);
        }
    }

    /// <summary>
    /// Ends the lease on <paramref name="partitionKey"/> if its id is at most <paramref name="upTo"/>, refuses later
    /// arrivals of grants up to that id, and returns once no read runs under the ended lease.
    /// </summary>
    public Task RevokeAsync(string partitionKey, long upTo)
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
        return ended?.End() ?? Task.CompletedTask;
    }
}
