using Cloud.Grains.Delegation;
using Cloud.Grains.FirstServers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Hosting;
using Orleans.Runtime;

namespace Cloud.Grains.Hosting;

/// <summary>
/// Graceful drain: when a silo is stopped (SIGTERM, Ctrl+C, <c>IHost.StopAsync</c>), it first stops taking delegated
/// work and waits until every copy it schedules as a RAID worker is on disk and every copy it holds as a first server
/// has been committed by its target, and only then lets Orleans deactivate its grains and leave the cluster.
/// </summary>
/// <remarks>
/// Without this, a stopping silo would drop the replicated copies queued in its RAID worker; that is safe only while
/// their first servers live to re-delegate, and not at all when the silo was both first server and target of a write
/// it had already acknowledged. The wait runs at the start of the <see cref="ServiceLifecycleStage.Active"/> stop,
/// while messaging, membership and the partition-lock grains are all still up, so the queued batches can finish.
/// </remarks>
public sealed partial class GracefulDrain(
    SiloRuntimeSettings settings,
    SiloUsage usage,
    FirstServerWrites firstServer,
    TimeSpan timeout,
    ILogger<GracefulDrain> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    /// <summary>How often the drain looks at the queues.</summary>
    public static readonly TimeSpan PollPeriod = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// How long the queues must stay empty before the drain ends: a first server that chose this silo just before it
    /// was marked draining may still be sending a copy.
    /// </summary>
    public static readonly TimeSpan QuietPeriod = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// How the last drain ended (for logs and tests): copies left when the wait ended, 0 when fully drained.
    /// </summary>
    public int LeftOver { get; private set; }

    /// <inheritdoc />
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(GracefulDrain), ServiceLifecycleStage.Active, _ => Task.CompletedTask, DrainAsync);

    private async Task DrainAsync(CancellationToken cancellationToken)
    {
        settings.Draining = true;
        var started = DateTimeOffset.UtcNow;
        var deadline = started + timeout;
        LogDraining(logger, usage.QueueDepth, firstServer.HeldCopies);
        var quietSince = (DateTimeOffset?)null;
        while (true)
        {
            var left = usage.QueueDepth + firstServer.HeldCopies;
            var now = DateTimeOffset.UtcNow;
            if (left == 0)
            {
                quietSince ??= now;
                if (now - quietSince >= QuietPeriod) break;
            }
            else quietSince = null;
            if (now >= deadline || cancellationToken.IsCancellationRequested)
            {
                LeftOver = left;
                LogDrainTimedOut(logger, timeout, left);
                return;
            }
            try { await Task.Delay(PollPeriod, cancellationToken).ConfigureAwait(false); }
            catch (OperationCanceledException) { /* the loop reports what is left */ }
        }
        LeftOver = 0;
        LogDrained(logger, (DateTimeOffset.UtcNow - started).TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stopping: draining {Queued} scheduled and {Held} held writes before leaving the cluster")]
    private static partial void LogDraining(ILogger logger, int queued, int held);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stopping: drained in {Milliseconds:0} ms; every scheduled and held write is committed")]
    private static partial void LogDrained(ILogger logger, double milliseconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "Stopping: the drain did not finish within {Timeout}; {Left} writes are left to their first servers' re-delegation")]
    private static partial void LogDrainTimedOut(ILogger logger, TimeSpan timeout, int left);
}

/// <summary>Registers <see cref="GracefulDrain"/>.</summary>
public static class GracefulDrainExtensions
{
    /// <summary>
    /// Makes a stopping silo finish its scheduled and held writes (up to <paramref name="timeout"/>) before it leaves.
    /// </summary>
    public static ISiloBuilder AddCloudGracefulDrain(this ISiloBuilder builder, TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
        builder.Services.AddSingleton(sp => new GracefulDrain(
            sp.GetRequiredService<SiloRuntimeSettings>(), sp.GetRequiredService<SiloUsage>(),
            sp.GetRequiredService<FirstServerWrites>(),
            timeout, sp.GetRequiredService<ILogger<GracefulDrain>>()));
        builder.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(
            sp => sp.GetRequiredService<GracefulDrain>());
        return builder;
    }
}
