using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.RaidWorkers;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.Disks;

/// <summary>
/// Brings a returning host's members back (issue 15, item 4): one silo of each host (the one that serves its disks)
/// looks every <see cref="CheckInterval"/> for volumes whose member on this host is away (missing) or was left
/// catching up, while its file is here. For each, it closes the volume on every silo, so that every engine
/// reassembles it with the disk reachable again, where the member rejoins under a new identity as resyncing, and starts
/// the volume's rebuild, which for such a member resyncs only the stripes recorded while it was away
/// (<see cref="RaidMaintenance.RebuildAsync"/>). A member still away afterwards (the other silos do not reach this host
/// yet) is tried again later, each time after twice the wait, up to <see cref="MaxRetryDelay"/>.
/// </summary>
internal sealed partial class MemberReturn(
    IGrainFactory grains,
    IClusterMembershipService membership,
    HostDisks hosts,
    ILocalSiloDetails silo,
    IOptions<CloudOptions> options,
    ILogger<MemberReturn> logger) : BackgroundService
{
    /// <summary>How often the volumes are looked at.</summary>
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(5);

    /// <summary>The longest wait before a volume whose member stayed away is tried again.</summary>
    public static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(60);

    private readonly string _host = options.Value.HostName;
    private readonly Dictionary<string, (DateTimeOffset Next, TimeSpan Delay)> _backoff = new(StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(CheckInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                if (hosts.ServingSilo(_host) != silo.Name) continue;
                try { await CheckAsync(stoppingToken); }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested) { LogCheckFailed(logger, ex); }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    private async Task CheckAsync(CancellationToken stoppingToken)
    {
        foreach (var info in await grains.GetGrain<IVolumeCatalogGrain>(0).ListAsync())
        {
            stoppingToken.ThrowIfCancellationRequested();
            var mine = Enumerable.Range(0, info.DiskCount)
                .Where(i => info.MemberHost(i) == _host && File.Exists(info.DiskPaths[i]))
                .ToList();
            if (mine.Count == 0) continue;
            var now = DateTimeOffset.UtcNow;
            if (_backoff.TryGetValue(info.Name, out var wait) && now < wait.Next) continue;
            var volume = grains.GetGrain<IVolumeGrain>(info.Name);
            var status = await volume.ShowAsync();
            if (status.Rebuild is { Running: true }) continue;
            var back = mine.Where(i => status.Disks.FirstOrDefault(d => d.Index == i)?.State
                is DiskState.Missing or DiskState.Resyncing).ToList();
            if (back.Count == 0)
            {
                _backoff.Remove(info.Name);
                continue;
            }
            var delay = wait.Delay == TimeSpan.Zero ? CheckInterval : TimeSpan.FromTicks(
                Math.Min(MaxRetryDelay.Ticks, wait.Delay.Ticks * 2));
            _backoff[info.Name] = (now + delay, delay);
            LogCatchingUp(logger, info.Name, string.Join(",", back), _host);
            await CloseEverywhereAsync(info.Name);
            await volume.StartRebuildAsync();
        }
    }

    /// <summary>Closes the volume in every active silo's engine: each reassembles it from the disks on its next use.</summary>
    private Task CloseEverywhereAsync(string volumeName) =>
        Task.WhenAll(membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active)
            .Select(m => grains.GetGrain<IRaidWorkerGrain>(m.Name).CloseVolumeAsync(volumeName)));

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: members {Members} of host {Host} are back; catching them up")]
    private static partial void LogCatchingUp(ILogger logger, string volume, string members, string host);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Looking for members of this host to catch up failed")]
    private static partial void LogCheckFailed(ILogger logger, Exception exception);
}
