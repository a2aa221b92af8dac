using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.FirstServers;

/// <summary>
/// Calls the RAID worker that serves a volume for this silo (<see cref="VolumeReach.WorkerSiloFor"/>: this silo's own,
/// or a live silo of the host whose files the volume is) and waits out that silo's death. Between a kill and the
/// cluster's declaration the call fails, and a host whose only silo died has no live silo until it is restarted: the
/// call is made again, to the silo picked anew each time, until <see cref="CloudOptions.RedelegationTimeout"/> (as a
/// write waits for a delegate of that host). Only then does the request fail, with the error naming the host to start.
/// </summary>
/// <remarks>For idempotent calls only (reads, trims of whole blocks): a call whose answer was lost is made again.</remarks>
public sealed class VolumeWorkers(VolumeReach reach, IGrainFactory grains, IOptions<CloudOptions> options)
{
    /// <summary>Calls <paramref name="call"/> on the worker serving <paramref name="volume"/>; see the class.</summary>
    public async Task<T> CallAsync<T>(VolumeInfo volume, Func<IRaidWorkerGrain, Task<T>> call)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(call);
        try
        {
            return await SiloFailures.RetryAsync(
                () => call(grains.GetGrain<IRaidWorkerGrain>(LiveWorkerSilo(volume))),
                options.Value.RedelegationTimeout,
                ex => ex is NoLiveSiloYetException || SiloFailures.IsSiloFailure(ex)).ConfigureAwait(false);
        }
        catch (NoLiveSiloYetException)
        {
            throw VolumeReach.NoSiloReaches(volume, VolumeReach.RequiredHost(volume)!);
        }
    }

    /// <summary><see cref="CallAsync{T}"/> for a call without a result.</summary>
    public Task CallAsync(VolumeInfo volume, Func<IRaidWorkerGrain, Task> call) =>
        CallAsync(volume, async worker => { await call(worker).ConfigureAwait(false); return true; });

    private string LiveWorkerSilo(VolumeInfo volume)
    {
        try
        {
            return reach.WorkerSiloFor(volume);
        }
        catch (CloudStorageException)
        {
            // The volume's host has no live silo in the load table (WorkerSiloFor throws nothing else).
            throw new NoLiveSiloYetException();
        }
    }

    /// <summary>The volume's host has no live silo now; it may have one again within the timeout.</summary>
    private sealed class NoLiveSiloYetException : Exception;
}
