using System.Collections.Immutable;
using System.Diagnostics;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Locks;

/// <summary>
/// The lock calls every writer and reader makes, with the time spent waiting for the lock recorded in
/// <see cref="CloudMetrics.LockWait"/> (<c>cloud.lock.wait</c>), so that lock contention shows in the silo's metrics.
/// </summary>
internal static class MeteredLocks
{
    /// <summary>
    /// <see cref="IPartitionLockGrain.AcquireAsync"/>, with the wait recorded in <c>cloud.lock.wait</c>.
    /// </summary>
    public static async Task<LockGrant> AcquireMeteredAsync(this IPartitionLockGrain lockGrain, LockRequest request)
    {
        var start = Stopwatch.GetTimestamp();
        var grant = await lockGrain.AcquireAsync(request).ConfigureAwait(false);
        CloudMetrics.LockWait.Record(Stopwatch.GetElapsedTime(start).TotalSeconds,
            new KeyValuePair<string, object?>("mode", request.Mode == LockMode.Exclusive ? "exclusive" : "shared"));
        return grant;
    }

    /// <summary>
    /// <see cref="IPartitionLockGrain.AcquireForWriteAsync"/>, recording the wait in <c>cloud.lock.wait</c>.
    /// </summary>
    public static async Task<WriteLockGrant> AcquireForWriteMeteredAsync(
        this IPartitionLockGrain lockGrain,
        LockRequest request,
        long firstBlock,
        int blockCount,
        ImmutableArray<long> batchTimestamps)
    {
        var start = Stopwatch.GetTimestamp();
        var grant = await lockGrain.AcquireForWriteAsync(
            request, firstBlock, blockCount, batchTimestamps).ConfigureAwait(false);
        CloudMetrics.LockWait.Record(
            Stopwatch.GetElapsedTime(start).TotalSeconds, new KeyValuePair<string, object?>("mode", "exclusive"));
        return grant;
    }
}
