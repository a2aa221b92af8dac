using System.Diagnostics;

namespace Cloud.Testing;

/// <summary>
/// Waits for a condition that another party (a silo, a process, a background loop) makes true, polling on a monotonic
/// clock until a deadline. The one polling loop of the test projects, so that each test says what it waits for and
/// how long, not how to wait.
/// </summary>
public static class Eventually
{
    /// <summary>
    /// Default bound for a condition to become true: far above normal (a few seconds) so that a slow, shared machine
    /// does not flake; it only stops a broken run from hanging.
    /// </summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>Default pause between two evaluations of a condition.</summary>
    public static readonly TimeSpan DefaultPollInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>Waits up to <see cref="Bound"/> for <paramref name="condition"/>.</summary>
    /// <exception cref="TimeoutException">The condition was still false at the deadline; the message names
    /// <paramref name="what"/>.</exception>
    public static Task TrueAsync(Func<bool> condition, string what) =>
        TrueAsync(() => Task.FromResult(condition()), what, Bound, DefaultPollInterval);

    /// <summary>Waits up to <see cref="Bound"/> for <paramref name="condition"/>.</summary>
    /// <exception cref="TimeoutException">The condition was still false at the deadline; the message names
    /// <paramref name="what"/>.</exception>
    public static Task TrueAsync(Func<Task<bool>> condition, string what) =>
        TrueAsync(condition, what, Bound, DefaultPollInterval);

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for <paramref name="condition"/>, evaluating it every
    /// <paramref name="pollInterval"/>.
    /// </summary>
    /// <exception cref="TimeoutException">The condition was still false at the deadline; the message names
    /// <paramref name="what"/>.</exception>
    public static async Task TrueAsync(Func<Task<bool>> condition, string what, TimeSpan timeout, TimeSpan pollInterval)
    {
        if (!await WithinAsync(condition, timeout, pollInterval).ConfigureAwait(false))
        {
            throw new TimeoutException($"condition not reached within {timeout}: {what}");
        }
    }

    /// <summary>
    /// Reads a value until <paramref name="accept"/> takes it, and returns it; for waits whose failure message should
    /// show the last value seen (a membership table, a status).
    /// </summary>
    /// <exception cref="TimeoutException">No value was accepted by the deadline; the message is
    /// <paramref name="describeFailure"/> of the last one.</exception>
    public static async Task<T> ValueAsync<T>(Func<Task<T>> read, Func<T, bool> accept, TimeSpan timeout,
        TimeSpan pollInterval,
        Func<T, string> describeFailure)
    {
        T last = default!;
        var accepted = await WithinAsync(
            async () => accept(last = await read().ConfigureAwait(false)), timeout, pollInterval)
            .ConfigureAwait(false);
        return accepted ? last : throw new TimeoutException(describeFailure(last));
    }

    /// <summary>
    /// Evaluates <paramref name="condition"/> every <paramref name="pollInterval"/> until it is true (returns true) or
    /// <paramref name="timeout"/> has passed (returns false). The condition is always evaluated at least once, and once
    /// more after the deadline would pass, so a condition that becomes true during the last pause still counts.
    /// </summary>
    public static async Task<bool> WithinAsync(Func<Task<bool>> condition, TimeSpan timeout, TimeSpan pollInterval)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(pollInterval, TimeSpan.Zero);
        var start = Stopwatch.GetTimestamp();
        while (!await condition().ConfigureAwait(false))
        {
            if (Stopwatch.GetElapsedTime(start) >= timeout)
            {
                return false;
            }

            await Task.Delay(pollInterval).ConfigureAwait(false);
        }

        return true;
    }

    /// <summary>
    /// The synchronous-condition form of <see cref="WithinAsync(Func{Task{bool}}, TimeSpan, TimeSpan)"/>.
    /// </summary>
    public static Task<bool> WithinAsync(Func<bool> condition, TimeSpan timeout, TimeSpan pollInterval) =>
        WithinAsync(() => Task.FromResult(condition()), timeout, pollInterval);
}
