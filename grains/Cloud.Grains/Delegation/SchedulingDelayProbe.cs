using System.Diagnostics;
using Microsoft.Extensions.Hosting;

namespace Cloud.Grains.Delegation;

/// <summary>
/// Measures how long this silo makes work wait to run (<see cref="SiloUsage.SchedulingDelayMs"/>): every
/// <see cref="Period"/> a timer queues one work item to the thread pool's global queue, timed from when the timer was
/// due until the item runs. The grains, the RAID worker and the disk service all run on that pool, so the wait is
/// added to every step of their work. A silo whose processor is capped (a container's CPU limit, a cgroup quota)
/// shows low CPU use while it falls behind; this is how the load table sees it.
/// </summary>
internal sealed class SchedulingDelayProbe(SiloUsage usage, TimeProvider time) : BackgroundService
{
    /// <summary>Time between probes: often enough that a quota period (100 ms by default) is sampled in its phases.</summary>
    public static readonly TimeSpan Period = TimeSpan.FromMilliseconds(50);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                // Timed from when the timer was due: a throttled process's timer fires late too (nothing of the
                // process runs until its next quota period), and then the queued item runs at once.
                var due = Stopwatch.GetTimestamp() + (long)(Period.TotalSeconds * Stopwatch.Frequency);
                await Task.Delay(Period, time, stoppingToken).ConfigureAwait(false);
                usage.ObserveSchedulingDelay(await MeasureAsync(due).ConfigureAwait(false));
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Queues one work item to the pool's global queue and returns the time from <paramref name="since"/> (a
    /// <see cref="Stopwatch"/> timestamp, at the latest now) until it ran.
    /// </summary>
    internal static async Task<TimeSpan> MeasureAsync(long since)
    {
        var ran = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        ThreadPool.UnsafeQueueUserWorkItem(static r => r.SetResult(Stopwatch.GetTimestamp()), ran, preferLocal: false);
        var at = await ran.Task.ConfigureAwait(false);
        return at > since ? Stopwatch.GetElapsedTime(since, at) : TimeSpan.Zero;
    }
}
