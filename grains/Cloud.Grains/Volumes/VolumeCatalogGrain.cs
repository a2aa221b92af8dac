using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Orleans.Runtime;

namespace Cloud.Grains.Volumes;

/// <summary>The catalog grain's persisted state: every volume's definition, by name.</summary>
[GenerateSerializer, Alias("cloud.VolumeCatalogState")]
internal sealed class VolumeCatalogState
{
    /// <summary>The volumes, ordered by name.</summary>
    [Id(0)]
    public List<VolumeInfo> Volumes { get; set; } = [];

    /// <summary>NBD access grants, ordered by volume then identity (absent in catalogs from before them).</summary>
    [Id(1)]
    public List<NbdGrant> Grants { get; set; } = [];
}

/// <summary>
/// The volume catalog (key 0). Not reentrant: creates and deletes run one at a time, so names stay unique. The
/// catalog is grain state in <see cref="CloudGrainStorage.Name"/>; a write refused (a stale ETag: another activation
/// wrote meanwhile) or failed ends this activation, and the change it carried is not applied, so no activation goes
/// on from a catalog other than the stored one.
/// </summary>
internal sealed class VolumeCatalogGrain(
    [PersistentState(CloudGrainStorage.CatalogState, CloudGrainStorage.Name)]
    IPersistentState<VolumeCatalogState> state,
    CatalogStore store,
    IVolumeStoreFactory factory,
    IClusterMembershipService membership,
    VolumeReach reach,
    Cloud.Storage.Azure.BlockDeviceFactory disks,
    Disks.MemberPlacement placement) : Grain, IVolumeCatalogGrain
{
    private Dictionary<string, VolumeInfo> _volumes = new(StringComparer.Ordinal);
    private ImmutableArray<NbdGrant> _grants = [];

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _volumes = state.State.Volumes.ToDictionary(v => v.Name, StringComparer.Ordinal);
        _grants = [.. state.State.Grants ?? []];
        return Task.CompletedTask;
    }

    /// <summary>
    /// Durably replaces the catalog with <paramref name="volumes"/> and only then makes it this activation's view.
    /// </summary>
    private async Task SaveAsync(Dictionary<string, VolumeInfo> volumes, ImmutableArray<NbdGrant>? grants = null)
    {
        var newGrants = grants ?? _grants;
        state.State = new VolumeCatalogState
        {
            Volumes = [.. volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal)],
            Grants = [.. newGrants],
        };
        try
        {
            await state.WriteStateAsync();
        }
        catch (Exception ex)
        {
            // After a refused or failed write the stored catalog is not known here (a lost reply may even hide a
            // write that happened), so a fresh activation must read it again.
            DeactivateOnIdle();
            throw new CloudStorageException(
                $"the volume catalog was not saved ({ex.GetType().Name}: {ex.Message}); nothing changed, retry the request");
        }
        _volumes = volumes;
        _grants = newGrants;
    }

    private Dictionary<string, VolumeInfo> With(string name, VolumeInfo info) =>
        new(_volumes, StringComparer.Ordinal) { [name] = info };

    public async Task<VolumeInfo> CreateAsync(VolumeSpec spec)
    {
        VolumeMath.Validate(spec);
        if (_volumes.ContainsKey(spec.Name))
            throw new CloudRequestException(
                $"volume '{spec.Name}' already exists; choose another name or delete it first");
        var id = Guid.NewGuid();
        var folder = $"{spec.Name}-{Tag(id)}";
        var directory = Path.Combine(store.VolumesDirectory, folder);
        // Without --disk in a cluster of hosts with disk pools, one member goes to each host's pool. Otherwise the
        // members are created here: a file member is this host's, a page blob or a shared block device every host's.
        var pooled = spec.Disks.IsDefaultOrEmpty && placement.HasPools;
        var memberBytes = factory.MemberSizeBytes(spec, spread: pooled);
        var (paths, hosts) = pooled
            ? await placement.PlaceAsync(spec, folder, memberBytes)
            : spec.Disks.IsDefaultOrEmpty ? WithHosts(DefaultDisks(spec, id, directory)) : WithHosts(RequestedDisks(spec));
        var info = new VolumeInfo(spec.Name, id, spec.SizeBytes, spec.Level, spec.DiskCount, spec.ChunkSizeBytes,
            spec.Durable, paths, DateTimeOffset.UtcNow, hosts);
        try
        {
            await using var created = await EngineErrors.Guard(
                () => factory.CreateAsync(info, memberBytes, CancellationToken.None).AsTask());
            if (created.CapacityBytes < spec.SizeBytes)
                throw new InvalidOperationException(
                    $"engine made {created.CapacityBytes} bytes for a {spec.SizeBytes}-byte volume");
            await created.FlushAsync(CancellationToken.None);
            await SaveAsync(With(spec.Name, info));
        }
        catch (Exception ex)
        {
            // Nothing half-made stays behind.
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
            if (pooled) await placement.RemoveAsync(info, folder);
            if (ex is CloudRequestException or CloudStorageException) throw;
            throw new CloudStorageException($"creating volume '{spec.Name}' failed: {ex.Message}");
        }
        return info;
    }

    /// <summary>
    /// The members of a volume created without <c>--disk</c>: page blobs in the configured default container when
    /// there is one (every host reaches them, so the volume outlives the silo that created it), else files under
    /// <paramref name="directory"/> on this host.
    /// </summary>
    private ImmutableArray<string> DefaultDisks(VolumeSpec spec, Guid id, string directory) =>
        disks.PageBlobs is { HasDefaultContainer: true } account
            ? [.. Enumerable.Range(0, spec.DiskCount)
                .Select(i => MemberDisks.ToLocation(account.DefaultMember(spec.Name, Tag(id), i)))]
            : [.. Enumerable.Range(0, spec.DiskCount).Select(i => Path.Combine(directory, $"disk{i}.img"))];

    private static string Tag(Guid id) => id.ToString("N")[..8];

    private (ImmutableArray<string> Paths, ImmutableArray<string> Hosts) WithHosts(ImmutableArray<string> paths) =>
        (paths, MemberDisks.HostsOf(paths, reach.HostName));

    /// <summary>
    /// The default page-blob members of <paramref name="info"/> (those <see cref="DefaultDisks"/> made), which the
    /// catalog deletes with the volume; page blobs the operator named are the operator's.
    /// </summary>
    private IEnumerable<string> DefaultBlobsOf(VolumeInfo info) =>
        disks.PageBlobs is { HasDefaultContainer: true } account
            ? info.DiskPaths.Where((p, i) => p == MemberDisks.ToLocation(
                account.DefaultMember(info.Name, Tag(info.VolumeId), i)))
            : [];

    /// <summary>
    /// The catalog locations of the disks a spec names; refuses a wrong count, a bad descriptor, a repeated disk or a
    /// disk another volume uses.
    /// </summary>
    private ImmutableArray<string> RequestedDisks(VolumeSpec spec)
    {
        if (spec.Disks.Length != spec.DiskCount)
            throw new CloudRequestException(
                $"{spec.Disks.Length} --disk descriptors given for --disks {spec.DiskCount}; give one per member disk, or omit --disks");
        var paths = spec.Disks.Select(
            d => MemberDisks.ParseRequested(d, Path.GetDirectoryName(store.VolumesDirectory)!))
            .ToImmutableArray();
        var repeated = paths.GroupBy(p => p, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (repeated is not null)
            throw new CloudRequestException(
                $"--disk {MemberDisks.Describe(repeated.Key)} is given more than once; each member needs its own disk");
        foreach (var p in paths) CheckUnused(p);
        return paths;
    }

    /// <summary>
    /// Refuses a disk that is already a member of some volume: formatting it would destroy that volume.
    /// </summary>
    private void CheckUnused(string location)
    {
        var owner = _volumes.Values.FirstOrDefault(v => v.DiskPaths.Contains(location, StringComparer.Ordinal));
        if (owner is not null)
            throw new CloudRequestException(
                $"--disk {MemberDisks.Describe(location)} is already a member of volume '{owner.Name}'; use another disk");
    }

    public Task<ImmutableArray<VolumeInfo>> ListAsync() =>
        Task.FromResult(_volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal).ToImmutableArray());

    /// <remarks>
    /// A miss is read again from storage before it is answered: while membership changes, Orleans' grain directory may
    /// let a second activation of this grain live for a moment, and one that activated before a create would tell a
    /// client that the volume just created does not exist (seen once on the six-host bed under load).
    /// </remarks>
    public async Task<VolumeInfo?> GetAsync(string name)
    {
        if (_volumes.TryGetValue(name, out var info)) return info;
        await state.ReadStateAsync();
        await OnActivateAsync(CancellationToken.None);
        return _volumes.GetValueOrDefault(name);
    }

    public async Task DeleteAsync(string name)
    {
        if (!_volumes.TryGetValue(name, out var info))
            throw new CloudRequestException(
                $"volume '{name}' does not exist; 'cloudctl volume list' shows the volumes");
        await Task.WhenAll(ActiveSilos().Select(s => CloseOnAsync(s, name)));
        var remaining = new Dictionary<string, VolumeInfo>(_volumes, StringComparer.Ordinal);
        remaining.Remove(name);
        // A later volume of the same name starts without the old one's grants.
        await SaveAsync(remaining, [.. _grants.Where(g => g.Volume != name)]);
        // Only the disks the catalog made (files under the volumes directory, page blobs in the default container
        // named after this volume) go; disks the operator named with --disk (other files, page blobs) are the
        // operator's and stay.
        var volumes = store.VolumesDirectory + Path.DirectorySeparatorChar;
        var ours = info.DiskPaths.Where(
            p => MemberDisks.IsFile(p) && Path.GetFullPath(p).StartsWith(volumes, StringComparison.Ordinal))
            .ToList();
        foreach (var path in ours) File.Delete(path);
        // Pool members live on their hosts: each host's disk service deletes its own.
        await placement.RemoveAsync(info, $"{info.Name}-{Tag(info.VolumeId)}");
        foreach (var blob in DefaultBlobsOf(info))
            await disks.DeleteAsync(MemberDisks.FromLocation(blob), CancellationToken.None);
        foreach (var directory in ours.Select(Path.GetDirectoryName).Distinct())
        {
            if (directory is not null
                && Directory.Exists(directory)
                && !Directory.EnumerateFileSystemEntries(directory).Any())
                Directory.Delete(directory);
        }
    }

    /// <summary>Records a member's new disk path (after a replacement).</summary>
    public Task<VolumeInfo> SetDiskPathAsync(string name, int index, string path) =>
        SetMemberAsync(name, index, path, null);

    /// <summary>Records a member's new disk path and, when given, its host (after a replacement).</summary>
    public async Task<VolumeInfo> SetMemberAsync(string name, int index, string path, string? newHost)
    {
        if (!_volumes.TryGetValue(name, out var info))
            throw new CloudRequestException(
                $"volume '{name}' does not exist; 'cloudctl volume list' shows the volumes");
        if (index < 0 || index >= info.DiskCount)
            throw new CloudRequestException(
                $"disk index {index} is not a member of volume '{name}'; use 0-{info.DiskCount - 1}");
        if (info.DiskPaths[index] != path) CheckUnused(path);
        // A new file member is made by the volume's worker on the volume's host (or, for a volume of shared disks
        // only, on the volume grain's silo, approximated here by this host).
        var host = newHost ?? (MemberDisks.IsShared(path)
            ? ""
            : info.MemberHost(index) ?? VolumeReach.RequiredHost(info) ?? reach.HostName);
        var hosts = info.MemberHosts.IsDefaultOrEmpty
            ? MemberDisks.HostsOf(info.DiskPaths, reach.HostName)
            : info.MemberHosts;
        info = info with { DiskPaths = info.DiskPaths.SetItem(index, path), MemberHosts = hosts.SetItem(index, host) };
        await SaveAsync(With(name, info));
        return info;
    }

    public async Task<NbdGrant> GrantNbdAsync(string identity, string volume, bool readOnly)
    {
        if (NbdGrant.CheckIdentity(identity) is { } error) throw new CloudRequestException(error);
        if (!_volumes.ContainsKey(volume))
            throw new CloudRequestException(
                $"volume '{volume}' does not exist; 'cloudctl volume list' shows the volumes");
        var grant = new NbdGrant(identity, volume, readOnly);
        await SaveAsync(_volumes, Sorted(_grants.Where(g => !Same(g, identity, volume)).Append(grant)));
        return grant;
    }

    public async Task<bool> RevokeNbdAsync(string identity, string volume)
    {
        if (!_grants.Any(g => Same(g, identity, volume))) return false;
        await SaveAsync(_volumes, [.. _grants.Where(g => !Same(g, identity, volume))]);
        return true;
    }

    public Task<ImmutableArray<NbdGrant>> ListNbdGrantsAsync() => Task.FromResult(_grants);

    private static bool Same(NbdGrant g, string identity, string volume) =>
        g.Identity == identity && g.Volume == volume;

    private static ImmutableArray<NbdGrant> Sorted(IEnumerable<NbdGrant> grants) =>
        [.. grants.OrderBy(g => g.Volume, StringComparer.Ordinal).ThenBy(g => g.Identity, StringComparer.Ordinal)];

    /// <summary>How long a delete waits for a silo that does not answer to be declared dead.</summary>
    private static readonly TimeSpan CloseRetryBound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Closes volume <paramref name="name"/> on <paramref name="silo"/>. A silo just killed is still active in the
    /// membership for a few seconds and cannot answer: once the membership no longer lists it as active it holds
    /// nothing open, so there is nothing left to close; until then (at most <see cref="CloseRetryBound"/>) it is asked
    /// again.
    /// </summary>
    private async Task CloseOnAsync(string silo, string name)
    {
        var deadline = DateTimeOffset.UtcNow + CloseRetryBound;
        var delay = SiloFailures.FirstRetryDelay;
        while (true)
        {
            try
            {
                await GrainFactory.GetGrain<IRaidWorkerGrain>(silo).CloseVolumeAsync(name);
                return;
            }
            catch (Exception ex) when (SiloFailures.IsSiloFailure(ex) && DateTimeOffset.UtcNow < deadline)
            {
                if (!ActiveSilos().Contains(silo, StringComparer.Ordinal)) return;
                await Task.Delay(delay);
                delay = SiloFailures.NextDelay(delay);
            }
        }
    }

    private IEnumerable<string> ActiveSilos() =>
        membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.Name);
}
