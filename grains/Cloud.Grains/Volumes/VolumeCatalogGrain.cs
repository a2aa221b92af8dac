using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Orleans.Runtime;

namespace Cloud.Grains.Volumes;

/// <summary>The volume catalog (key 0). Not reentrant: creates and deletes run one at a time, so names stay unique.</summary>
internal sealed class VolumeCatalogGrain(CatalogStore store, IVolumeStoreFactory factory, IClusterMembershipService membership) : Grain, IVolumeCatalogGrain
{
    /// <summary>Write-intent slots the engine has (one per concurrently writing process).</summary>
    public const int MaxWriterSlots = 64;

    private Dictionary<string, VolumeInfo> _volumes = new(StringComparer.Ordinal);
    private Dictionary<string, int> _slots = new(StringComparer.Ordinal);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _volumes = (await store.LoadAsync()).ToDictionary(v => v.Name, StringComparer.Ordinal);
        _slots = await store.LoadSlotsAsync();
    }

    public async Task<VolumeInfo> CreateAsync(VolumeSpec spec)
    {
        VolumeMath.Validate(spec);
        if (_volumes.ContainsKey(spec.Name))
            throw new CloudRequestException($"volume '{spec.Name}' already exists; choose another name or delete it first");
        var id = Guid.NewGuid();
        var directory = Path.Combine(store.VolumesDirectory, $"{spec.Name}-{id.ToString("N")[..8]}");
        var paths = spec.Disks.IsDefaultOrEmpty
            ? Enumerable.Range(0, spec.DiskCount).Select(i => Path.Combine(directory, $"disk{i}.img")).ToImmutableArray()
            : RequestedDisks(spec);
        var info = new VolumeInfo(spec.Name, id, spec.SizeBytes, spec.Level, spec.DiskCount, spec.ChunkSizeBytes, spec.Durable, paths, DateTimeOffset.UtcNow);
        try
        {
            await using var created = await EngineErrors.Guard(() => factory.CreateAsync(info, factory.MemberSizeBytes(spec), CancellationToken.None).AsTask());
            if (created.CapacityBytes < spec.SizeBytes)
                throw new InvalidOperationException($"engine made {created.CapacityBytes} bytes for a {spec.SizeBytes}-byte volume");
            await created.FlushAsync(CancellationToken.None);
        }
        catch (Exception ex)
        {
            // Nothing half-made stays behind.
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
            if (ex is CloudRequestException or CloudStorageException) throw;
            throw new CloudStorageException($"creating volume '{spec.Name}' failed: {ex.Message}");
        }
        _volumes[spec.Name] = info;
        await store.SaveAsync(_volumes.Values);
        return info;
    }

    /// <summary>The catalog locations of the disks a spec names; refuses a wrong count, a bad descriptor, a repeated disk or a disk another volume uses.</summary>
    private ImmutableArray<string> RequestedDisks(VolumeSpec spec)
    {
        if (spec.Disks.Length != spec.DiskCount)
            throw new CloudRequestException($"{spec.Disks.Length} --disk descriptors given for --disks {spec.DiskCount}; give one per member disk, or omit --disks");
        var paths = spec.Disks.Select(d => MemberDisks.ParseRequested(d, Path.GetDirectoryName(store.VolumesDirectory)!)).ToImmutableArray();
        var repeated = paths.GroupBy(p => p, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (repeated is not null)
            throw new CloudRequestException($"--disk {MemberDisks.Describe(repeated.Key)} is given more than once; each member needs its own disk");
        foreach (var p in paths) CheckUnused(p);
        return paths;
    }

    /// <summary>Refuses a disk that is already a member of some volume: formatting it would destroy that volume.</summary>
    private void CheckUnused(string location)
    {
        var owner = _volumes.Values.FirstOrDefault(v => v.DiskPaths.Contains(location, StringComparer.Ordinal));
        if (owner is not null)
            throw new CloudRequestException($"--disk {MemberDisks.Describe(location)} is already a member of volume '{owner.Name}'; use another disk");
    }

    public async Task<int> GetWriterSlotAsync(string siloName)
    {
        if (_slots.TryGetValue(siloName, out var slot)) return slot;
        var used = _slots.Values.ToHashSet();
        slot = Enumerable.Range(0, MaxWriterSlots).FirstOrDefault(s => !used.Contains(s), -1);
        if (slot < 0)
            throw new CloudRequestException($"all {MaxWriterSlots} write-intent slots are taken by silo names {string.Join(", ", _slots.Keys)}; reuse a silo name");
        _slots[siloName] = slot;
        await store.SaveSlotsAsync(_slots);
        return slot;
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
        // Only the files the catalog made (under the volumes directory) go; disks the operator named with --disk
        // (other files, page blobs) are the operator's and stay.
        var volumes = store.VolumesDirectory + Path.DirectorySeparatorChar;
        var ours = info.DiskPaths.Where(p => MemberDisks.IsFile(p) && Path.GetFullPath(p).StartsWith(volumes, StringComparison.Ordinal)).ToList();
        foreach (var path in ours) File.Delete(path);
        foreach (var directory in ours.Select(Path.GetDirectoryName).Distinct())
        {
            if (directory is not null && Directory.Exists(directory) && !Directory.EnumerateFileSystemEntries(directory).Any())
                Directory.Delete(directory);
        }
    }

    /// <summary>Records a member's new disk path (after a replacement).</summary>
    public async Task<VolumeInfo> SetDiskPathAsync(string name, int index, string path)
    {
        if (!_volumes.TryGetValue(name, out var info))
            throw new CloudRequestException($"volume '{name}' does not exist; 'cloudctl volume list' shows the volumes");
        if (index < 0 || index >= info.DiskCount)
            throw new CloudRequestException($"disk index {index} is not a member of volume '{name}'; use 0-{info.DiskCount - 1}");
        if (info.DiskPaths[index] != path) CheckUnused(path);
        info = info with { DiskPaths = info.DiskPaths.SetItem(index, path) };
        _volumes[name] = info;
        await store.SaveAsync(_volumes.Values);
        return info;
    }

    private IEnumerable<string> ActiveSilos() =>
        membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.Name);
}
