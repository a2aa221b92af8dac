using Cloud.Grains.Abstractions;
using Cloud.Grains.Disks;
using Cloud.Grains.Engine;
using Cloud.Grains.RaidWorkers;
using Cloud.Storage.Azure;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Cloud.Grains.Volumes;

/// <summary>
/// A volume's control plane. Membership changes (fail, replace, rebuild) run on one eligible silo's engine (this
/// grain's silo when it reaches every member, else one of the volume's host) after every other silo closed the
/// volume; those silos reassemble it from the superblocks on their next I/O, so they see the change as the disks
/// record it.
/// </summary>
[Reentrant]
internal sealed class VolumeGrain(
    IClusterMembershipService membership,
    VolumeDirectory directory,
    CatalogStore catalogStore,
    VolumeReach reach,
    IVolumeStoreFactory factory,
    MemberPlacement placement)
    : Grain, IVolumeGrain
{
    private RebuildStatus? _rebuild;
    private Task? _rebuildTask;
    private readonly SemaphoreSlim _control = new(1, 1);

    private string Name => this.GetPrimaryKeyString();
    /// <summary>The RAID worker that runs this volume's control operations: one that reaches every member.</summary>
    private (string Silo, IRaidWorkerGrain Grain) Worker(VolumeInfo info)
    {
        var name = reach.WorkerSiloFor(info);
        return (name, GrainFactory.GetGrain<IRaidWorkerGrain>(name));
    }

    private async Task<VolumeInfo> InfoAsync() =>
        await GrainFactory.GetGrain<IVolumeCatalogGrain>(0).GetAsync(Name)
        ?? throw new CloudRequestException($"volume '{Name}' does not exist; 'cloudctl volume list' shows the volumes");

    public async Task<VolumeStatus> ShowAsync()
    {
        var info = await InfoAsync();
        var status = await Worker(info).Grain.GetVolumeStatusAsync(Name);
        return status with { Rebuild = _rebuild };
    }

    public async Task<VolumeStatus> FailDiskAsync(int index, string reason)
    {
        var info = await InfoAsync();
        CheckIndex(info, index);
        await ExclusiveAsync(info, worker => worker.FailMemberAsync(Name, index, reason));
        return await ShowAsync();
    }

    public Task<VolumeStatus> ReplaceDiskAsync(int index) => ReplaceDiskWithAsync(index, null);

    public Task<VolumeStatus> ReplaceDiskWithAsync(int index, string? disk) => ReplaceAsync(index, disk, null);

    public Task<VolumeStatus> ReplaceDiskOnHostAsync(int index, string host)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(host);
        return ReplaceAsync(index, null, host);
    }

    public Task ReportRebuildWaitingAsync(string reason)
    {
        if (_rebuildTask is not { IsCompleted: false }) _rebuild = new RebuildStatus(false, 0, 0, reason);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Replaces member <paramref name="index"/>: onto <paramref name="disk"/> when given; for a volume spread over the
    /// hosts' pools onto a new file in the pool of <paramref name="host"/>, or of the eligible host with the most room;
    /// else onto a new disk of the same kind next to the old one.
    /// </summary>
    private async Task<VolumeStatus> ReplaceAsync(int index, string? disk, string? host)
    {
        var info = await InfoAsync();
        CheckIndex(info, index);
        if (_rebuildTask is { IsCompleted: false })
            throw new CloudRequestException(
                $"volume '{Name}' is rebuilding; wait for it to finish before replacing another disk");
        var status = await Worker(info).Grain.GetVolumeStatusAsync(Name);
        var member = status.Disks.FirstOrDefault(d => d.Index == index);
        if (member is not null && member.State == DiskState.Active)
            throw new CloudRequestException(
                $"disk {index} of volume '{Name}' is active; fail it first ('cloudctl disk fail {Name} {index}')");
        var stamp = $"{DateTimeOffset.UtcNow:yyyyMMddHHmmssfff}";
        string path;
        string? memberHost = null;
        if (disk is not null && host is not null)
            throw new CloudRequestException("give either --disk or --host for the new member, not both");
        if (host is not null && !MemberPlacement.IsSpread(info))
            throw new CloudRequestException(
                $"--host applies to a volume spread over the hosts' disk pools; volume '{Name}' is not (its members are shared disks or files of one host); omit --host or name the new disk with --disk");
        if (disk is not null)
        {
            path = MemberDisks.ParseRequested(disk, Path.GetDirectoryName(catalogStore.VolumesDirectory)!);
            if (info.DiskPaths.Contains(path, StringComparer.Ordinal))
                throw new CloudRequestException(
                    $"--disk {MemberDisks.Describe(path)} is already a member of volume '{Name}'; use a new disk");
        }
        else if (MemberPlacement.IsSpread(info))
        {
            // A host holds one member of a spread volume, so the new member goes to a host without one, made there
            // by that host's disk service, in the volume's pool folder (deleted with the volume).
            (memberHost, path) = await placement.PlaceReplacementAsync(
                info, index, host, $"{Name}-{info.VolumeId.ToString("N")[..8]}", stamp, MemberSizeBytes(info));
        }
        else if (MemberDisks.FromLocation(info.DiskPaths[index]) is PageBlobDisk blob)
        {
            // A page-blob member is replaced by a new blob next to it, so the volume keeps its kind of disks.
            path = MemberDisks.ToLocation(blob with { Blob = $"{blob.Blob}.{stamp}" });
        }
        else
        {
            path = Path.Combine(Path.GetDirectoryName(info.DiskPaths[index])!, $"disk{index}.{stamp}.img");
        }
        await ExclusiveAsync(info, async worker =>
        {
            await worker.ReplaceMemberAsync(Name, index, path, memberHost);
            var catalog = GrainFactory.GetGrain<IVolumeCatalogGrain>(0);
            if (memberHost is null) await catalog.SetDiskPathAsync(Name, index, path);
            else await catalog.SetMemberAsync(Name, index, path, memberHost);
            directory.Invalidate(Name);
        });
        return await ShowAsync();
    }

    public async Task<RebuildStatus> StartRebuildAsync()
    {
        var info = await InfoAsync();
        if (_rebuildTask is { IsCompleted: false }) return _rebuild!;
        _rebuild = new RebuildStatus(true, 0, 0, null);
        _rebuildTask = RunRebuildAsync(info);
        return _rebuild;
    }

    private async Task RunRebuildAsync(VolumeInfo info)
    {
        try
        {
            await ExclusiveAsync(info, worker => worker.RebuildAsync(Name));
            _rebuild = _rebuild! with
            {
                Running = false,
                StripesDone = Math.Max(_rebuild.StripesDone, _rebuild.StripesTotal)
            };
        }
        catch (Exception ex)
        {
            _rebuild = (_rebuild ?? new RebuildStatus(false, 0, 0, null)) with { Running = false, Error = ex.Message };
        }
    }

    public Task<RebuildStatus?> GetRebuildAsync() => Task.FromResult(_rebuild);

    public Task ReportRebuildAsync(RebuildStatus status)
    {
        if (_rebuild is null || _rebuild.Running) _rebuild = status with { Running = true };
        return Task.CompletedTask;
    }

    public async Task<ScrubResult> ScrubAsync(bool repair)
    {
        var info = await InfoAsync();
        return await Worker(info).Grain.ScrubAsync(Name, repair);
    }

    /// <summary>
    /// Closes the volume on every other silo, runs the change on the worker, and closes again so they reassemble
    /// afresh.
    /// </summary>
    private async Task ExclusiveAsync(VolumeInfo info, Func<IRaidWorkerGrain, Task> change)
    {
        await _control.WaitAsync();
        try
        {
            var (name, worker) = Worker(info);
            await CloseElsewhereAsync(name);
            await change(worker);
            await CloseElsewhereAsync(name);
            // The worker reopens from the superblocks too, so every silo works from the same recorded state.
            await worker.CloseVolumeAsync(Name);
        }
        finally
        {
            _control.Release();
        }
    }

    private Task CloseElsewhereAsync(string workerSilo) =>
        Task.WhenAll(membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active && m.Name != workerSilo)
            .Select(m => GrainFactory.GetGrain<IRaidWorkerGrain>(m.Name).CloseVolumeAsync(Name)));

    private long MemberSizeBytes(VolumeInfo info) =>
        factory.MemberSizeBytes(
            new VolumeSpec(info.Name, info.SizeBytes, info.Level, info.DiskCount, info.ChunkSizeBytes, info.Durable),
            Disks.MemberPlacement.IsSpread(info));

    private void CheckIndex(VolumeInfo info, int index)
    {
        if (index < 0 || index >= info.DiskCount)
            throw new CloudRequestException(
                $"disk index {index} is not a member of volume '{Name}'; use 0-{info.DiskCount - 1}");
    }
}
