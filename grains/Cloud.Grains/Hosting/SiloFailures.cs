using Cloud.Grains.RaidWorkers;
using Orleans.Runtime;

namespace Cloud.Grains.Hosting;

/// <summary>
/// The one policy for calls whose callee's silo may have just died: what counts as such a failure, and how long to
/// wait before calling again. Until membership declares a dead silo dead, calls to grains it hosted fail; after that,
/// Orleans places them anew, so an idempotent call that is repeated with a growing pause eventually succeeds.
/// </summary>
public static class SiloFailures
{
    /// <summary>First pause before calling again; doubles up to <see cref="MaxRetryDelay"/>.</summary>
    public static readonly TimeSpan FirstRetryDelay = TimeSpan.FromMilliseconds(50);

    /// <summary>Longest pause between two calls.</summary>
    public static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(1);

    /// <summary>
    /// True when <paramref name="exception"/> says the callee's silo is gone or unreachable (not that the call itself
    /// was wrong): the silo is unavailable, rejected the message, did not answer in time, or is not in the cluster
    /// any more (a silo-bound RAID worker whose silo left).
    /// </summary>
    public static bool IsSiloFailure(Exception exception) =>
        exception is SiloUnavailableException or OrleansMessageRejectionException or TimeoutException
            or SiloNotFoundException
        || exception is OrleansException { InnerException: SiloUnavailableException };

    /// <summary>The pause after <paramref name="delay"/>: twice as long, at most <see cref="MaxRetryDelay"/>.</summary>
    public static TimeSpan NextDelay(TimeSpan delay)
        => TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks));

    /// <summary>
    /// Calls <paramref name="call"/> until it returns, pausing <see cref="FirstRetryDelay"/>, then twice as long each
    /// time up to <see cref="MaxRetryDelay"/>, after each silo failure; any other exception, and a silo failure after
    /// <paramref name="timeout"/>, is thrown. <paramref name="onRetry"/> hears of each failure that is retried.
    /// </summary>
    public static Task<T> RetryAsync<T>(Func<Task<T>> call, TimeSpan timeout, Action<Exception>? onRetry = null) =>
        RetryAsync(call, timeout, IsSiloFailure, onRetry);

    /// <summary>
    /// <see cref="RetryAsync{T}(Func{Task{T}}, TimeSpan, Action{Exception}?)"/>, retrying only the failures
    /// <paramref name="retryIf"/> accepts (a narrower test than <see cref="IsSiloFailure"/>).
    /// </summary>
    public static async Task<T> RetryAsync<T>(
        Func<Task<T>> call,
        TimeSpan timeout,
        Func<Exception, bool> retryIf,
        Action<Exception>? onRetry = null)
    {
        var deadline = DateTimeOffset.UtcNow + timeout;
        var delay = FirstRetryDelay;
        while (true)
        {
            try
            {
                return await call().ConfigureAwait(false);
            }
            catch (Exception ex) when (retryIf(ex) && DateTimeOffset.UtcNow < deadline)
            {
                onRetry?.Invoke(ex);
                await Task.Delay(delay).ConfigureAwait(false);
                delay = NextDelay(delay);
            }
        }
    }

    /// <summary>
    /// <see cref="RetryAsync{T}(Func{Task{T}}, TimeSpan, Action{Exception}?)"/> for a call without a result.
    /// </summary>
    public static Task RetryAsync(Func<Task> call, TimeSpan timeout, Action<Exception>? onRetry = null) =>
        RetryAsync(call, timeout, IsSiloFailure, onRetry);

    /// <summary>
    /// <see cref="RetryAsync{T}(Func{Task{T}}, TimeSpan, Func{Exception, bool}, Action{Exception}?)"/> for a call
    /// without a result.
    /// </summary>
    public static Task RetryAsync(
        Func<Task> call,
        TimeSpan timeout,
        Func<Exception, bool> retryIf,
        Action<Exception>? onRetry = null) =>
        RetryAsync(async () => { await call().ConfigureAwait(false); return true; }, timeout, retryIf, onRetry);
}
