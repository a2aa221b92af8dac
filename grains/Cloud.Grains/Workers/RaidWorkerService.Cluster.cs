using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Load;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Logging;

namespace Cloud.Grains.Workers;

// Cluster safety of the engines on several silos: adopting other silos' member changes, and resyncing a dead
// silo's write-intent slot (docs/WRITE-HOLE.md, "A dead silo's slot").
public sealed partial class RaidWorkerService
{
    /// <summary>
    /// Re-reads the member table of the volume <paramref name="volumeId"/> if it is open on this silo. A volume not
    /// open here has nothing to refresh: it is assembled from the superblocks when it is next used.
    /// </summary>
    internal async Task RefreshMembersAsync(Guid volumeId, RefreshMode mode)
    {
        if (mode == RefreshMode.Skip) return;
        foreach (var lazy in _volumes.Values.ToList())
        {
            if (!lazy.IsValueCreated || !lazy.Value.IsCompletedSuccessfully) continue;
            var v = lazy.Value.Result;
            if (v.Store.VolumeId != volumeId) continue;
            var refresh = RefreshOneAsync(v);
            if (mode == RefreshMode.Now) await refresh.ConfigureAwait(false);
        }

        async Task RefreshOneAsync(VolumeRuntime v)
        {
            try { await v.Store.RefreshMembersAsync(CancellationToken.None).ConfigureAwait(false); }
            catch (ObjectDisposedException) { /* closed meanwhile: the next open reads the superblocks anyway */ }
            catch (Exception ex) when (mode == RefreshMode.Background) { LogRefreshFailed(logger, v.Info.Name, ex); }
        }
    }

    /// <summary>
    /// Resyncs every volume's stripes that a dead silo's intent slot marks as possibly mid-update. Each volume's
    /// partition locks are taken exclusively, in partition order (the order every writer uses), for the whole
    /// volume while the slot is recovered, so that no live writer touches a stripe being resynced.
    /// </summary>
    public async Task<long> RecoverWriterSlotAsync(int writerSlot)
    {
        long total = 0;
        foreach (var info in await grains.GetGrain<IVolumeCatalogGrain>(0).ListAsync().ConfigureAwait(false))
        {
            var v = await OpenAsync(info.Name).ConfigureAwait(false);
            var spp = VolumeMath.StripesPerPartition(v.Info, _options.PartitionTargetBytes);
            var partitions = (v.Store.StripeCount + spp - 1) / spp;
            var held = new List<(IPartitionLockGrain Grain, long Token)>();
            try
            {
                for (long p = 0; p < partitions; p++)
                {
                    var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v.Info, p));
                    var last = Math.Min(v.Store.StripeCount, (p + 1) * spp) - 1;
                    var grant = await lockGrain.AcquireMeteredAsync(new LockRequest(p * spp, last, LockMode.Exclusive, _siloAddress, _options.LockLease, false)).ConfigureAwait(false);
                    held.Add((lockGrain, grant.FencingToken));
                }
                var resynced = await v.Store.RecoverWriterSlotAsync(writerSlot, CancellationToken.None).ConfigureAwait(false);
                LogSlotRecovered(logger, info.Name, writerSlot, resynced);
                total += resynced;
            }
            finally
            {
                foreach (var (lockGrain, token) in held)
                {
                    try { await lockGrain.ReleaseAsync(token).ConfigureAwait(false); }
                    catch (Exception ex) { LogRefreshFailed(logger, info.Name, ex); }
                }
            }
        }
        return total;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: re-reading the superblocks or releasing a lock failed")]
    private static partial void LogRefreshFailed(ILogger logger, string volume, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: dead silo's intent slot {Slot} recovered, {Stripes} stripes resynced")]
    private static partial void LogSlotRecovered(ILogger logger, string volume, int slot, long stripes);
}
