using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.Delegation;

/// <summary>
/// Publishes this silo's usage to the load table grain every period and keeps the returned table: one small
/// round trip per silo per period, so the cost stays flat as volumes and I/O grow.
/// </summary>
internal sealed partial class LoadPublisher(
    IGrainFactory grains,
    ILocalSiloDetails silo,
    SiloUsage usage,
    LoadTable table,
    SiloRuntimeSettings settings,
    IOptions<CloudOptions> options,
    TimeProvider time,
    Volumes.VolumeReach reach,
    Disks.DiskPools pools,
    ILogger<LoadPublisher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var period = options.Value.LoadPublishPeriod;
        var tableGrain = grains.GetGrain<ILoadTableGrain>(0);
        using var timer = new PeriodicTimer(period, time);
        var failures = 0;
        do
        {
            try
            {
                var load = Sample();
                table.Update(await tableGrain.PublishAsync(load).WaitAsync(stoppingToken));
                failures = 0;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                // The silo may still be joining, or the table grain moving after a silo died: the next period retries.
                if (failures++ % 50 == 0) LogPublishFailed(logger, ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    internal SiloLoad Sample()
    {
        usage.DecayIdleLatency();
        var load = new SiloLoad(silo.Name, silo.SiloAddress.ToParsableString(), usage.PendingDelegatedBytes,
            usage.QueueDepth, usage.DiskLatencyMs, usage.SampleCpuPercent(), settings.Draining, time.GetUtcNow(),
            usage.DelegationsReused, usage.DelegationsNew, usage.WritesPerformed, Overloaded: false,
            HostName: reach.HostName, PoolCapacityBytes: pools.CapacityBytes, PoolFreeBytes: pools.FreeBytes,
            SchedulingDelayMs: usage.SchedulingDelayMs, DiskFloorMs: usage.SampleDiskFloorMs());
        return load with { Overloaded = table.IsOverloaded(load) };
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Publishing this silo's load failed; retrying every period")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception);
}
