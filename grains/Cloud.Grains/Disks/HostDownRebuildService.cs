using Cloud.Grains.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Disks;

/// <summary>
/// Asks the cluster's one <see cref="IHostDownRebuildGrain"/> to check the hosts every
/// <see cref="HostDownRebuildPlan.CheckInterval"/>. Every silo asks, so that the grain comes back on a surviving silo
/// when its own dies, and it resumes the replacement it recorded.
/// </summary>
internal sealed partial class HostDownRebuildService(
    IGrainFactory grains,
    IOptions<CloudOptions> options,
    ILogger<HostDownRebuildService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = HostDownRebuildPlan.CheckInterval(options.Value.HostDownRebuildDelay);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(interval, stoppingToken);
                try
                {
                    await grains.GetGrain<IHostDownRebuildGrain>(0).CheckAsync().WaitAsync(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // The silo starting or stopping, or the grain moving: the next tick asks again.
                    LogCheckFailed(logger, ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Asking the automatic rebuild of lost hosts to check failed")]
    private static partial void LogCheckFailed(ILogger logger, Exception exception);
}
