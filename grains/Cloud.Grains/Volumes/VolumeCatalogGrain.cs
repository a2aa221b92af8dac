using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Orleans.Runtime;

namespace Cloud.Grains.Volumes;

/// <summary>The volume catalog (key 0). Not reentrant: creates and deletes run one at a time, so names stay unique.</summary>
internal sealed class VolumeCatalogGrain(CatalogStore store, IVolumeStoreFactory factory, IClusterMembershipService membership) : Grain, IVolumeCatalogGrain
{
    private Dictionary<string, VolumeInfo> _volumes = new(StringComparer.Ordinal);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _volumes = (await store.LoadAsync()).ToDictionary(v => v.Name, StringComparer.Ordinal);
    }

    public async Task<VolumeInfo> CreateAsync(VolumeSpec spec)
    {
        VolumeMath.Validate(spec);
        if (_volumes.ContainsKey(spec.Name))
            throw new CloudRequestException($"volume '{spec.Name}' already exists; choose another name or delete it first");
        var id = Guid.NewGuid();
        var directory = Path.Combine(store.VolumesDirectory, $"{spec.Name}-{id.ToString("N")[..8]}");
        var paths = Enumerable.Range(0, spec.DiskCount).Select(i => Path.Combine(directory, $"disk{i}.img")).ToImmutableArray();
        var info = new VolumeInfo(spec.Name, id, spec.SizeBytes, spec.Level, spec.DiskCount, spec.ChunkSizeBytes, spec.Durable, paths, DateTimeOffset.UtcNow);
        try
        {
            await using var created = await factory.CreateAsync(info, factory.MemberSizeBytes(spec), CancellationToken.None);
            if (created.CapacityBytes < spec.SizeBytes)
                throw new InvalidOperationException($"engine made {created.CapacityBytes} bytes for a {spec.SizeBytes}-byte volume");
            await created.FlushAsync(CancellationToken.None);
        }
        catch
        {
            // Nothing half-made stays behind.
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
            throw;
        }
        _volumes[spec.Name] = info;
        await store.SaveAsync(_volumes.Values);
        return info;
    }

    public Task<ImmutableArray<VolumeInfo>> ListAsync() =>
        Task.FromResult(_volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal).ToImmutableArray());

    public Task<VolumeInfo?> GetAsync(string name) => Task.FromResult(_volumes.GetValueOrDefault(name));

    public async Task DeleteAsync(string name)
    {
        if (!_volumes.TryGetValue(name, out var info))
            throw new CloudRequestException($"volume '{name}' does not exist; 'cloudctl volume list' shows the volumes");
        await Task.WhenAll(ActiveSilos().Select(s => GrainFactory.GetGrain<IRaidWorkerGrain>(s).CloseVolumeAsync(name)));
        _volumes.Remove(name);
        await store.SaveAsync(_volumes.Values);
        foreach (var path in info.DiskPaths) File.Delete(path);
        var directory = Path.GetDirectoryName(info.DiskPaths[0]);
        if (directory is not null && Directory.Exists(directory) && !Directory.EnumerateFileSystemEntries(directory).Any())
            Directory.Delete(directory);
    }

    /// <summary>Records a member's new disk path (after a replacement).</summary>
    public async Task<VolumeInfo> SetDiskPathAsync(string name, int index, string path)
    {
        if (!_volumes.TryGetValue(name, out var info))
            throw new CloudRequestException($"volume '{name}' does not exist; 'cloudctl volume list' shows the volumes");
        if (index < 0 || index >= info.DiskCount)
            throw new CloudRequestException($"disk index {index} is not a member of volume '{name}'; use 0-{info.DiskCount - 1}");
        info = info with { DiskPaths = info.DiskPaths.SetItem(index, path) };
        _volumes[name] = info;
        await store.SaveAsync(_volumes.Values);
        return info;
    }

    private IEnumerable<string> ActiveSilos() =>
        membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.Name);
}
