using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Locks;

/// <summary>
/// The partition locks this silo holds right now, taken and given back through here by every writer, reader and
/// maintenance task of the silo. A partition-lock grain keeps its holders in memory only: when its silo dies, the grain
/// comes back elsewhere knowing none of them, and would grant a stripe that a surviving worker is still writing. The
/// new activation therefore asks every live silo for the grants it holds (<see cref="For"/>, through the RAID worker's
/// reclaim call) before it grants anything. The time spent waiting for a lock is recorded in
/// <see cref="CloudMetrics.LockWait"/> (<c>cloud.lock.wait</c>), so that lock contention shows in the silo's metrics.
/// </summary>
public sealed class HeldLocks
{
    /// <summary>
    /// How long one lock call waits inside the partition-lock grain before this silo asks again (see
    /// <see cref="LockRequest.MaxWait"/>): a call parked in the grain for longer would hold up the grain's deactivation,
    /// and every call queued behind it, when a silo dies (<see cref="PartitionLockGrain"/>'s remarks).
    /// </summary>
    public static readonly TimeSpan WaitSlice = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The longest a lock wait goes on, in slices, before it fails with a <see cref="TimeoutException"/>: the bound an
    /// unsliced call had (Orleans' default response timeout), so that a wait that is never granted ends as it did
    /// (with a <see cref="LockWaitTimeoutException"/>).
    /// </summary>
    public static readonly TimeSpan MaxTotalWait = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<(string Partition, long Token), LockGrant> _held = new();

    /// <summary>Locks held now, on every partition (for status and tests).</summary>
    public int Count => _held.Count;

    /// <summary>The grants this silo holds on one partition, for a reactivated partition-lock grain.</summary>
    public ImmutableArray<LockGrant> For(string partitionKey) =>
        [.. _held.Where(e => e.Key.Partition == partitionKey).Select(e => e.Value)];

    /// <summary><see cref="IPartitionLockGrain.AcquireAsync"/>, recorded as held until released.</summary>
    public async Task<LockGrant> AcquireAsync(IPartitionLockGrain lockGrain, LockRequest request)
    {
        var start = Stopwatch.GetTimestamp();
        var grant = await InSlicesAsync(request, lockGrain.AcquireAsync).ConfigureAwait(false);
        _held[(lockGrain.GetPrimaryKeyString(), grant.FencingToken)] = grant;
        CloudMetrics.LockWait.Record(Stopwatch.GetElapsedTime(start).TotalSeconds,
            new KeyValuePair<string, object?>("mode", request.Mode == LockMode.Exclusive ? "exclusive" : "shared"));
        return grant;
    }

    /// <summary>
    /// <see cref="AcquireAsync"/>, asked again (as a fresh wait) while the grain's silo is gone or unreachable, until
    /// <paramref name="timeout"/>: until membership declares a dead silo dead, calls to its grains fail, and then
    /// Orleans places the grain anew. A wait that the living grain answered but did not grant within
    /// <see cref="MaxTotalWait"/> (<see cref="LockWaitTimeoutException"/>) is not asked again.
    /// </summary>
    public Task<LockGrant> AcquireThroughSiloLossAsync(
        IPartitionLockGrain lockGrain,
        LockRequest request,
        TimeSpan timeout) =>
        SiloFailures.RetryAsync(() => AcquireAsync(lockGrain, request), timeout, GrainLost);

    /// <summary>A lock call failed because the grain's silo is gone or unreachable, not because the wait ran out.</summary>
    private static bool GrainLost(Exception exception) =>
        SiloFailures.IsSiloFailure(exception) && exception is not LockWaitTimeoutException;

    /// <summary><see cref="IPartitionLockGrain.AcquireForWriteAsync"/>, recorded as held until released.</summary>
    public async Task<WriteLockGrant> AcquireForWriteAsync(
        IPartitionLockGrain lockGrain,
        LockRequest request,
        long firstBlock,
        int blockCount,
        ImmutableArray<long> batchTimestamps)
    {
        var start = Stopwatch.GetTimestamp();
        var grant = await InSlicesAsync(
            request, sliced => lockGrain.AcquireForWriteAsync(sliced, firstBlock, blockCount, batchTimestamps))
            .ConfigureAwait(false);
        _held[(lockGrain.GetPrimaryKeyString(), grant.Grant.FencingToken)] = grant.Grant;
        CloudMetrics.LockWait.Record(
            Stopwatch.GetElapsedTime(start).TotalSeconds, new KeyValuePair<string, object?>("mode", "exclusive"));
        return grant;
    }

    /// <summary>
    /// Calls <paramref name="acquire"/> with the request bounded to <see cref="WaitSlice"/> until it is granted: each
    /// call that ends without a grant is asked again under the same wait id (keeping the wait's place in the queue)
    /// and the same pending-versions bound. Like an unsliced call, the wait ends with a grant, an error, or a
    /// <see cref="TimeoutException"/> after <see cref="MaxTotalWait"/>.
    /// </summary>
    private static async Task<T> InSlicesAsync<T>(LockRequest request, Func<LockRequest, Task<T>> acquire)
    {
        var sliced = request with { MaxWait = WaitSlice, WaitId = Guid.NewGuid() };
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            try
            {
                return await acquire(sliced).ConfigureAwait(false);
            }
            catch (LockWaitSliceEndedException ended) when (ended.WaitId == sliced.WaitId)
            {
                if (ended.PendingBelow != 0) sliced = sliced with { PendingBelow = ended.PendingBelow };
                if (Stopwatch.GetElapsedTime(start) >= MaxTotalWait)
                    throw new LockWaitTimeoutException(
                        $"{request.Mode} lock on stripes {request.FirstStripe}-{request.LastStripe} not granted within {MaxTotalWait}");
            }
        }
    }

    /// <summary>
    /// Renews a held lock every third of <paramref name="lease"/> until <paramref name="stop"/> is cancelled, for work
    /// under one lock that may outlast a lease (a rebuild step, a write-hole resync step on a slow disk). A renewal the
    /// grain refuses throws <see cref="LockFencedException"/>: the lease lapsed, and writers may have been let in.
    /// </summary>
    public static async Task RenewUntilCancelledAsync(
        IPartitionLockGrain lockGrain,
        long fencingToken,
        TimeSpan lease,
        CancellationToken stop)
    {
        try
        {
            while (true)
            {
                await Task.Delay(lease / 3, stop).ConfigureAwait(false);
                await lockGrain.RenewAsync(fencingToken, lease).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The work is over.
        }
    }

    /// <summary>
    /// <see cref="IPartitionLockGrain.ReleaseAsync"/>. The lock counts as given back even when the call fails: the
    /// grain that granted it is then gone, or ends the lease itself.
    /// </summary>
    public async Task ReleaseAsync(IPartitionLockGrain lockGrain, long fencingToken)
    {
        try
        {
            await lockGrain.ReleaseAsync(fencingToken).ConfigureAwait(false);
        }
        finally
        {
            Forget(lockGrain, fencingToken);
        }
    }

    /// <summary><see cref="IPartitionLockGrain.ReleaseOneWayAsync"/>, for readers.</summary>
    public async Task ReleaseOneWayAsync(IPartitionLockGrain lockGrain, long fencingToken)
    {
        try
        {
            await lockGrain.ReleaseOneWayAsync(fencingToken).ConfigureAwait(false);
        }
        finally
        {
            Forget(lockGrain, fencingToken);
        }
    }

    /// <summary>
    /// <see cref="IPartitionLockGrain.CommitAsync"/>; with <paramref name="release"/>, the lock is given back once the
    /// commit succeeded (a failed commit leaves the lock held, and its caller releases it).
    /// </summary>
    public async Task CommitAsync(
        IPartitionLockGrain lockGrain,
        long fencingToken,
        ImmutableArray<BlockCommit> written,
        ImmutableArray<long> settledTimestamps,
        string targetSilo,
        bool release)
    {
        await lockGrain.CommitAsync(fencingToken, written, settledTimestamps, targetSilo, release).ConfigureAwait(false);
        if (release) Forget(lockGrain, fencingToken);
    }

    private void Forget(IPartitionLockGrain lockGrain, long fencingToken) =>
        _held.TryRemove((lockGrain.GetPrimaryKeyString(), fencingToken), out _);
}
