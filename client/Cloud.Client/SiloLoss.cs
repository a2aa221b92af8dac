using Orleans.Runtime;

namespace Cloud.Client;

/// <summary>
/// The SDK's answer to a lost silo: between a silo's death and the cluster declaring it (seconds), the gateway may fail
/// to place a request (its directory lookup lands on the dead silo), or the grain the request needs was on that silo;
/// afterwards the same request succeeds. Requests that may be made twice (reads, writes of the same bytes, flushes,
/// trims, and the control plane's questions) are asked again; changes whose answer may have been lost after they were
/// made (create, delete, fail, replace, rebuild, scrub) are not.
/// </summary>
internal static class SiloLoss
{
    private static readonly TimeSpan FirstRetryDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Calls <paramref name="call"/>, and again after a pause (50 ms, doubling up to 1 s) while it fails because a
    /// silo is gone or unreachable, for at most <see cref="CloudVolume.SiloLossRetryBound"/>; any other failure is
    /// thrown at once.
    /// </summary>
    public static async Task<T> RetryAsync<T>(Func<Task<T>> call, CancellationToken cancellationToken = default)
    {
        var deadline = DateTimeOffset.UtcNow + CloudVolume.SiloLossRetryBound;
        var delay = FirstRetryDelay;
        while (true)
        {
            try
            {
                return await call().WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsSiloLoss(ex) && DateTimeOffset.UtcNow < deadline)
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks));
            }
        }
    }

    /// <summary><see cref="RetryAsync{T}"/> for a call without a result.</summary>
    public static Task RetryAsync(Func<Task> call, CancellationToken cancellationToken = default) =>
        RetryAsync(
            async () =>
            {
                await call().ConfigureAwait(false);
                return true;
            },
            cancellationToken);

    /// <summary>
    /// The request failed because a silo is gone or unreachable (not because it was wrong, nor slow: a response
    /// timeout is not asked again).
    /// </summary>
    public static bool IsSiloLoss(Exception exception) =>
        exception is SiloUnavailableException or OrleansMessageRejectionException
        || exception is OrleansException { InnerException: SiloUnavailableException };
}
