using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Cloud.Grains.Hosting;

/// <summary>
/// Closes the write hole a killed silo leaves without restarting the cluster: when membership declares a silo dead,
/// one surviving silo (the live silo with the smallest name, so every silo agrees without talking) resyncs the dead
/// silo's write-intent slot in every volume, under the volume's stripe locks (docs/WRITE-HOLE.md).
/// </summary>
internal sealed partial class DeadSiloRecovery(
    IClusterMembershipService membership,
    ILocalSiloDetails silo,
    IGrainFactory grains,
    RaidMaintenance worker,
    ILogger<DeadSiloRecovery> logger) : BackgroundService
{
    /// <summary>
    /// Attempts to recover one dead silo's slot before giving up (a restart's assembly still recovers it).
    /// </summary>
    public const int MaxAttempts = 5;

    /// <summary>Pause between attempts.</summary>
    public static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        HashSet<SiloAddress>? known = null;
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                var dead = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead).ToList();
                // Silos dead before this one joined were handled by the silos alive then (or by a lone silo's
                // assembly).
                if (known is null) { known = [.. dead.Select(m => m.SiloAddress)]; continue; }
                foreach (var m in dead)
                {
                    if (!known.Add(m.SiloAddress)) continue;
                    // Every silo, not only the one that recovers the slot: its engines may reconstruct a stripe the dead
                    // silo left half-written before that recovery reaches it.
                    worker.ForgetPartialParityIndexes();
                    var chosen = snapshot.Members.Values.Where(x => x.Status == SiloStatus.Active)
                        .Select(x => x.Name).Order(StringComparer.Ordinal).FirstOrDefault();
                    // A new incarnation under the same name writes through that slot itself (and recovers it when it
                    // assembles).
                    var reborn = snapshot.Members.Values.Any(x => x.Name == m.Name && x.Status != SiloStatus.Dead);
                    if (chosen == silo.Name && !reborn) _ = RecoverAsync(m.Name, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    private async Task RecoverAsync(string deadSilo, CancellationToken stoppingToken)
    {
        for (var attempt = 1; attempt <= MaxAttempts && !stoppingToken.IsCancellationRequested; attempt++)
        {
            try
            {
                var slot = await grains.GetGrain<IWriterSlotsGrain>(0).GetWriterSlotAsync(deadSilo);
                var handedOver = false;
                var stripes = await worker.RecoverWriterSlotAsync(slot, async volume =>
                {
                    var back = await IsBackWithAsync(deadSilo, volume);
                    handedOver |= back;
                    return back;
                });
                if (handedOver) LogHandedOver(logger, deadSilo, slot, stripes);
                else LogRecovered(logger, deadSilo, slot, stripes);
                return;
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                LogRetry(logger, deadSilo, attempt, ex);
                try { await Task.Delay(RetryDelay, stoppingToken); } catch (OperationCanceledException) { return; }
            }
        }
    }

    /// <summary>
    /// A silo of that name is active again (a new incarnation) and has the volume open: it writes through the same
    /// slot, and recovers the marks it found there when it opened the volume. A silo back without the volume open
    /// (or that cannot say) leaves the recovery to go on: the marks are not left waiting for an open that may not come.
    /// </summary>
    private async Task<bool> IsBackWithAsync(string siloName, string volumeName)
    {
        if (!membership.CurrentSnapshot.Members.Values.Any(m => m.Name == siloName && m.Status == SiloStatus.Active))
            return false;
        try { return await grains.GetGrain<IRaidWorkerGrain>(siloName).HasOpenAsync(volumeName); }
        catch (Exception ex) when (ex is OrleansException or TimeoutException) { return false; }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Dead silo {Silo}: intent slot {Slot} recovered, {Stripes} stripes resynced")]
    private static partial void LogRecovered(ILogger logger, string silo, int slot, long stripes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Dead silo {Silo}: intent slot {Slot}: {Stripes} stripes resynced, the rest left to the silo, which is back and recovers the marks it found itself")]
    private static partial void LogHandedOver(ILogger logger, string silo, int slot, long stripes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dead silo {Silo}: recovering its intent slot failed (attempt {Attempt})")]
    private static partial void LogRetry(ILogger logger, string silo, int attempt, Exception exception);
}
