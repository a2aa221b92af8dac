using Orleans.Concurrency;
using System.Collections.Immutable;

namespace Cloud.Grains.Locks;

/// <summary>How a stripe lock is held.</summary>
[GenerateSerializer, Alias("cloud.LockMode")]
public enum LockMode
{
    /// <summary>Readers: many at once.</summary>
    Shared,
    /// <summary>A writer of the stripe's data and parity: alone.</summary>
    Exclusive,
}

/// <summary>A request for a lock on a range of stripes inside one partition.</summary>
/// <param name="FirstStripe">First stripe (volume-wide index) to lock.</param>
/// <param name="LastStripe">Last stripe, inclusive.</param>
/// <param name="Mode">Shared or exclusive.</param>
/// <param name="HolderSilo">The holder's silo address (parsable form); its death ends the lease.</param>
/// <param name="Lease">How long the grant lives unless renewed.</param>
/// <param name="WaitForPendingWrites">
/// For readers: first wait until every write whose timestamp was assigned before this request, on these
/// stripes, has committed or been abandoned, so that a read never misses an acknowledged write.
/// </param>
/// <param name="PendingBelow">
/// With <paramref name="WaitForPendingWrites"/>: wait for the pending versions timestamped below this one instead of
/// below the request's arrival (0, the default). A sub-block write that already took its timestamp T reads its block
/// after every older version and must not wait for T itself, which settles only after that read.
/// </param>
/// <param name="MaxWait">
/// How long one call may wait inside the grain: zero (the default) waits until the lock is granted; 0-10 s ends the
/// call with <see cref="LockWaitSliceEndedException"/> when the lock is not granted by then, and the caller asks again
/// with the same <paramref name="WaitId"/>, keeping its place in the queue (<see cref="HeldLocks"/> does).
/// </param>
/// <param name="WaitId">Names one wait across the calls of a bounded wait; required with <paramref name="MaxWait"/>.</param>
[GenerateSerializer, Immutable, Alias("cloud.LockRequest")]
public sealed record LockRequest(
    [property: Id(0)] long FirstStripe,
    [property: Id(1)] long LastStripe,
    [property: Id(2)] LockMode Mode,
    [property: Id(3)] string HolderSilo,
    [property: Id(4)] TimeSpan Lease,
    [property: Id(5)] bool WaitForPendingWrites,
    [property: Id(6)] long PendingBelow = 0,
    [property: Id(7)] TimeSpan MaxWait = default,
    [property: Id(8)] Guid WaitId = default,
    [property: Id(9)] bool WantReadLease = false);

/// <summary>
/// A granted lock. The fencing token is presented before each disk write and at release. A shared grant asked with
/// <see cref="LockRequest.WantReadLease"/> may carry a read lease on the whole partition until
/// <paramref name="ReadLeaseExpiresUtc"/> (its id is the fencing token): see <see cref="ReadLeases"/>.
/// </summary>
[GenerateSerializer, Immutable, Alias("cloud.LockGrant")]
public sealed record LockGrant(
    [property: Id(0)] long FencingToken,
    [property: Id(1)] long FirstStripe,
    [property: Id(2)] long LastStripe,
    [property: Id(3)] LockMode Mode,
    [property: Id(4)] DateTimeOffset ExpiresUtc,
    [property: Id(5)] DateTimeOffset? ReadLeaseExpiresUtc = null);

/// <summary>
/// A new write timestamp for a range of blocks, with the unit's control object: which silo took the unit's last
/// delegated write (the active synchronization target) and whether that silo still holds an uncommitted copy.
/// </summary>
[GenerateSerializer, Immutable, Alias("cloud.TimestampGrant")]
public sealed record TimestampGrant(
    [property: Id(0)] long Timestamp,
    [property: Id(1)] string? ActiveTarget,
    [property: Id(2)] bool TargetHoldsPendingCopy);

/// <summary>The result of validating a batch before its disk write.</summary>
[GenerateSerializer, Immutable, Alias("cloud.ValidationResult")]
public sealed record ValidationResult(
    [property: Id(0)] ImmutableArray<long> CommittedTimestamps,
    [property: Id(1)] bool MergeSafe);

/// <summary>An exclusive lock for a batch of writes, validated in the same call that granted it.</summary>
/// <param name="Grant">The lock.</param>
/// <param name="Validation">What <see cref="IPartitionLockGrain.ValidateAsync"/> would have returned for the
/// batch.</param>
/// <param name="DiskCheckNeeded">
/// False when the grain's committed timestamps are provably complete for these blocks: every version in the batch was
/// timestamped by this activation (so anything an earlier activation let reach disk is older), and no exclusive
/// holder of these stripes ended in this activation without committing (so nothing newer reached disk unrecorded).
/// True means the writer must also compare against the block timestamps on disk.
/// </param>
[GenerateSerializer, Immutable, Alias("cloud.WriteLockGrant")]
public sealed record WriteLockGrant(
    [property: Id(0)] LockGrant Grant,
    [property: Id(1)] ValidationResult Validation,
    [property: Id(2)] bool DiskCheckNeeded);

/// <summary>Blocks written at one timestamp.</summary>
[GenerateSerializer, Immutable, Alias("cloud.BlockCommit")]
public sealed record BlockCommit(
    [property: Id(0)] long FirstBlock,
    [property: Id(1)] int BlockCount,
    [property: Id(2)] long Timestamp);

/// <summary>
/// A version a first server holds a copy of and has not yet seen committed: timestamped on these stripes, so readers
/// must wait for it.
/// </summary>
[GenerateSerializer, Immutable, Alias("cloud.HeldVersion")]
public sealed record HeldVersion(
    [property: Id(0)] long Timestamp,
    [property: Id(1)] long FirstStripe,
    [property: Id(2)] long LastStripe);

/// <summary>
/// What one silo holds of a partition: its lock grants and the versions its first server holds. A partition-lock
/// grain reactivated after its silo died asks every live silo for this before it serves anything.
/// </summary>
[GenerateSerializer, Immutable, Alias("cloud.PartitionClaims")]
public sealed record PartitionClaims(
    [property: Id(0)] ImmutableArray<LockGrant> Grants,
    [property: Id(1)] ImmutableArray<HeldVersion> Versions);

/// <summary>
/// A write lease on a whole partition (see <see cref="WriteLeases"/>): until the grain ends it, the holder silo hands
/// out the timestamps <paramref name="FirstTimestamp"/>-<paramref name="LastTimestamp"/> itself and takes the
/// partition's stripe locks in its own memory.
/// </summary>
/// <param name="Id">Names the lease in renewals and its end: its first timestamp.</param>
/// <param name="FirstTimestamp">The first timestamp of the lease's range.</param>
/// <param name="LastTimestamp">The last timestamp of the lease's range.</param>
/// <param name="ExpiresUtc">The grain's expiry of the lease, unless renewed.</param>
[GenerateSerializer, Immutable, Alias("cloud.WriteLeaseGrant")]
public sealed record WriteLeaseGrant(
    [property: Id(0)] long Id,
    [property: Id(1)] long FirstTimestamp,
    [property: Id(2)] long LastTimestamp,
    [property: Id(3)] DateTimeOffset ExpiresUtc);

/// <summary>
/// What an ended write lease gives back to its grain: the versions still pending (timestamped, not yet committed or
/// settled), every block range committed under the lease, and the stripe ranges a batch may have left written but
/// uncommitted (a batch that failed under the lease).
/// </summary>
[GenerateSerializer, Immutable, Alias("cloud.WriteLeaseReturn")]
public sealed record WriteLeaseReturn(
    [property: Id(0)] ImmutableArray<HeldVersion> Pending,
    [property: Id(1)] ImmutableArray<BlockCommit> Committed,
    [property: Id(2)] ImmutableArray<HeldVersion> Uncertain);

/// <summary>A partition's control object, for status and tests.</summary>
/// <param name="ActiveTarget">The silo writing the partition's copies now, if any.</param>
/// <param name="PreviousTarget">The one before it, if any.</param>
/// <param name="LastTimestamp">The last timestamp this activation handed out (0 before its first).</param>
/// <param name="PendingWrites">Versions handed out and not yet settled.</param>
/// <param name="Holders">Lock holders.</param>
/// <param name="Waiters">Lock requests waiting.</param>
/// <param name="FirstTimestamp">
/// The first timestamp this activation may hand out: above every one an earlier activation handed out (the reserved
/// range of the partition's clock).
/// </param>
[GenerateSerializer, Immutable, Alias("cloud.PartitionControl")]
public sealed record PartitionControl(
    [property: Id(0)] string? ActiveTarget,
    [property: Id(1)] string? PreviousTarget,
    [property: Id(2)] long LastTimestamp,
    [property: Id(3)] int PendingWrites,
    [property: Id(4)] int Holders,
    [property: Id(5)] int Waiters,
    [property: Id(6)] long FirstTimestamp = 0);

/// <summary>
/// One per (volume, partition = a range of stripes). Shared/exclusive stripe locks with FIFO waiters, leases ended
/// by time or by the holder silo's death, fencing tokens, per-block write timestamps that only grow, and the
/// control object with the active synchronization target. Key: <c>{volumeId:N}/{partition}</c>.
/// </summary>
[Alias("cloud.IPartitionLockGrain")]
public interface IPartitionLockGrain : IGrainWithStringKey
{
    /// <summary>
    /// Assigns a write timestamp newer than any this partition has handed out (also across reactivations), and
    /// registers the write as pending on its stripes until it is committed or settled, so that readers wait for it.
    /// </summary>
    [Alias("NextTimestamp")]
    Task<TimestampGrant> NextTimestampAsync(long firstStripe, long lastStripe, string firstServerSilo);

    /// <summary>
    /// Waits (FIFO per stripe) and grants the lock. With <see cref="LockRequest.MaxWait"/>, a call that was not granted
    /// within it throws <see cref="LockWaitSliceEndedException"/> and the wait goes on at the next call with the same
    /// <see cref="LockRequest.WaitId"/>.
    /// </summary>
    [Alias("Acquire")]
    Task<LockGrant> AcquireAsync(LockRequest request);

    /// <summary>
    /// Extends a lease. Throws <see cref="LockFencedException"/> when the token is no longer current.
    /// </summary>
    [Alias("Renew")]
    Task<LockGrant> RenewAsync(long fencingToken, TimeSpan lease);

    /// <summary>Releases a lock; a stale token is ignored.</summary>
    [Alias("Release")]
    Task ReleaseAsync(long fencingToken);

    /// <summary>
    /// <see cref="ReleaseAsync"/> without a reply, for readers: the reply would only delay the read's own reply,
    /// and a release that is lost (its silo died) ends with the lease anyway.
    /// </summary>
    [OneWay, Alias("ReleaseOneWay")]
    Task ReleaseOneWayAsync(long fencingToken);

    /// <summary>
    /// <see cref="AcquireAsync"/> of an exclusive lock followed by <see cref="ValidateAsync"/>, in one call: a writer
    /// always does both, so this saves it a round trip. Throws <see cref="LockFencedException"/> like
    /// <see cref="ValidateAsync"/>.
    /// </summary>
    [Alias("AcquireForWrite")]
    Task<WriteLockGrant> AcquireForWriteAsync(
        LockRequest request, long firstBlock, int blockCount, ImmutableArray<long> batchTimestamps);

    /// <summary>
    /// Checked just before a disk write: throws <see cref="LockFencedException"/> unless the token holds an exclusive
    /// lease covering the blocks. Returns each block's newest committed timestamp, and whether the batch may be
    /// written under its newest timestamp (no other pending version older than that touches these stripes).
    /// </summary>
    [Alias("Validate")]
    Task<ValidationResult> ValidateAsync(
        long fencingToken, long firstBlock, int blockCount, ImmutableArray<long> batchTimestamps);

    /// <summary>
    /// Records the block ranges written at their timestamps (which only ever raise a block's timestamp), settles the
    /// batch's pending versions, notes the target, and releases the lock when asked. Throws
    /// <see cref="LockFencedException"/> when the token is stale.
    /// </summary>
    [Alias("Commit")]
    Task CommitAsync(
        long fencingToken,
        ImmutableArray<BlockCommit> written,
        ImmutableArray<long> settledTimestamps,
        string targetSilo,
        bool release);

    /// <summary>Settles pending versions that ended without a disk write (cancelled or abandoned).</summary>
    [Alias("Settle")]
    Task SettleAsync(ImmutableArray<long> timestamps);

    /// <summary>
    /// Notes which silo now holds the unit's newest delegated copy (the active synchronization target).
    /// </summary>
    [Alias("SetTarget")]
    Task SetTargetAsync(string targetSilo);

    /// <summary>The control object.</summary>
    [Alias("GetControl")]
    Task<PartitionControl> GetControlAsync();

    /// <summary>
    /// Gives the caller's silo a write lease on the whole partition (<see cref="WriteLeases"/>) when no other silo
    /// writes or reads it: nothing pending or locked but the caller's own versions and batches, which are waited for
    /// (up to <see cref="WriteLeases.QuietWait"/>), and no other target. Returns null when refused. A silo that holds
    /// the lease already gets it again.
    /// </summary>
    [Alias("TryLeaseWrites")]
    Task<WriteLeaseGrant?> TryLeaseWritesAsync(string holderSilo, string holderName, TimeSpan length);

    /// <summary>Extends the write lease <paramref name="id"/>; null when it has ended.</summary>
    [Alias("RenewWriteLease")]
    Task<DateTimeOffset?> RenewWriteLeaseAsync(long id, TimeSpan length);

    /// <summary>Newest committed timestamps of these blocks as this grain knows them.</summary>
    [Alias("GetTimestamps")]
    Task<ImmutableArray<long>> GetTimestampsAsync(long firstBlock, int blockCount);
}

/// <summary>
/// A lock holder presented a fencing token that is no longer current: its lease ended, so it must not write.
/// </summary>
[GenerateSerializer, Alias("cloud.LockFencedException")]
public sealed class LockFencedException : Exception
{
    /// <summary>Creates the exception for the stale token.</summary>
    public LockFencedException(long fencingToken, string partition)
        : base($"fencing token {fencingToken} is no longer current on partition {partition}: its lease ended")
    {
        FencingToken = fencingToken;
        Partition = partition;
    }

    /// <summary>The stale token.</summary>
    [Id(0)]
    public long FencingToken { get; }

    /// <summary>The partition-lock grain's key.</summary>
    [Id(1)]
    public string Partition { get; } = "";
}

/// <summary>
/// A bounded lock wait (<see cref="LockRequest.MaxWait"/>) ended without a grant: ask again with the same
/// <see cref="LockRequest.WaitId"/> and, for a reader, <see cref="LockRequest.PendingBelow"/> set to
/// <see cref="PendingBelow"/>, so the wait keeps its place and waits for no version newer than it first did.
/// </summary>
[GenerateSerializer, Alias("cloud.LockWaitSliceEndedException")]
public sealed class LockWaitSliceEndedException : Exception
{
    /// <summary>Creates the exception for the wait that goes on.</summary>
    public LockWaitSliceEndedException(Guid waitId, long pendingBelow, string partition)
        : base($"lock wait {waitId} on partition {partition} is not granted yet; ask again")
    {
        WaitId = waitId;
        PendingBelow = pendingBelow;
    }

    /// <summary>The wait that goes on.</summary>
    [Id(0)]
    public Guid WaitId { get; }

    /// <summary>
    /// For a request with <see cref="LockRequest.WaitForPendingWrites"/>: the timestamp below which it waits for pending
    /// versions (fixed at its first call); 0 otherwise.
    /// </summary>
    [Id(1)]
    public long PendingBelow { get; }
}

/// <summary>
/// A lock wait that the partition-lock grain answered slice after slice but did not grant within
/// <see cref="HeldLocks.MaxTotalWait"/>. It is a <see cref="TimeoutException"/>, as an unsliced wait's end was; unlike a
/// call that timed out, it says the grain is alive, so a caller that retries only silo failures can tell them apart.
/// </summary>
[GenerateSerializer, Alias("cloud.LockWaitTimeoutException")]
public sealed class LockWaitTimeoutException : TimeoutException
{
    /// <summary>Creates the exception for the wait that ended.</summary>
    public LockWaitTimeoutException(string message) : base(message) { }
}
