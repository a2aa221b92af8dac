using Cloud.Grains.Workers;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Cloud.Grains.Hosting;

/// <summary>
/// At a graceful silo stop (Ctrl+C, SIGTERM), before the runtime goes down: first the copies this silo's first
/// server holds get committed, then this silo's RAID worker finishes its queue and flushes. An ungraceful stop
/// cancels the wait, as a crash would.
/// </summary>
internal sealed partial class GracefulStop(FirstServer firstServer, RaidWorkerService worker, ILogger<GracefulStop> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(GracefulStop), ServiceLifecycleStage.Active, _ => Task.CompletedTask, StopAsync);

    private async Task StopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await firstServer.DrainAllAsync(cancellationToken);
            await worker.DrainAllAsync(cancellationToken);
            LogDrained(logger);
        }
        catch (OperationCanceledException)
        {
            LogAbandoned(logger);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Every held and queued write reached disk before stopping")]
    private static partial void LogDrained(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stop was not graceful: queued writes were left to other silos' first servers")]
    private static partial void LogAbandoned(ILogger logger);
}
