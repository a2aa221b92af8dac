using System.Collections.Concurrent;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Volumes;

/// <summary>
/// This silo's cache of volume definitions, so the data path asks the catalog grain once per volume, not per I/O.
/// A miss that finds the catalog grain's silo just dead asks again until Orleans places the grain anew (within
/// <see cref="CloudOptions.RedelegationTimeout"/>), so the first request for a volume after a silo's death does not fail.
/// </summary>
public sealed class VolumeDirectory(IGrainFactory grains, IOptions<CloudOptions> options)
{
    private readonly ConcurrentDictionary<string, VolumeInfo> _cache = new(StringComparer.Ordinal);

    /// <summary>The volume's definition; throws <see cref="CloudRequestException"/> naming an unknown volume.</summary>
    public async ValueTask<VolumeInfo> GetAsync(string name)
    {
        if (_cache.TryGetValue(name, out var info)) return info;
        info = await SiloFailures.RetryAsync(
                () => grains.GetGrain<IVolumeCatalogGrain>(0).GetAsync(name), options.Value.RedelegationTimeout)
                .ConfigureAwait(false)
            ?? throw new CloudRequestException(
                $"volume '{name}' does not exist; 'cloudctl volume list' shows the volumes");
        _cache[name] = info;
        return info;
    }

    /// <summary>
    /// The definition of the volume with <paramref name="volumeId"/>, or null when the catalog has none (deleted):
    /// placement knows a unit only by its key, <c>{volumeId:N}/{partition}</c>.
    /// </summary>
    public async ValueTask<VolumeInfo?> FindAsync(Guid volumeId)
    {
        foreach (var cached in _cache.Values)
        {
            if (cached.VolumeId == volumeId) return cached;
        }
        VolumeInfo? found = null;
        var volumes = await SiloFailures.RetryAsync(
            () => grains.GetGrain<IVolumeCatalogGrain>(0).ListAsync(), options.Value.RedelegationTimeout)
            .ConfigureAwait(false);
        foreach (var info in volumes)
        {
            _cache[info.Name] = info;
            if (info.VolumeId == volumeId) found = info;
        }
        return found;
    }

    /// <summary>Forgets a volume (deleted, or its members changed).</summary>
    public void Invalidate(string name) => _cache.TryRemove(name, out _);
}
