using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Volumes;
using Cloud.Storage.Azure;
using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.Grains.Engine;

/// <summary>
/// The storage engine's <see cref="RaidVolume"/> over file and page-blob member disks, as the grains see it.
/// </summary>
internal sealed class RaidVolumeStore(
    RaidVolume volume,
    IBlockDevice?[] devices,
    VolumeInfo info,
    BlockDeviceFactory disks,
    IReadOnlyList<int> writerSlotsToRecover) : IVolumeStore
{
    private readonly List<IBlockDevice> _retired = [];
    private readonly string[] _locations = [.. info.DiskPaths];

    public long CapacityBytes => volume.CapacityBytes;
    public long StripeDataBytes => volume.Geometry.StripeDataBytes;
    public long StripeCount => volume.StripeCount;

    public long MemberBytesNeeded => volume.MemberBytesNeeded;

    public bool KeepsPartialParityLog => volume.KeepsPartialParityLog;
    public int BlockSizeBytes => volume.BlockSizeBytes;

    public VolumeHealthState Health => volume.Health switch
    {
        VolumeHealth.Healthy => VolumeHealthState.Healthy,
        VolumeHealth.Degraded => VolumeHealthState.Degraded,
        VolumeHealth.Rebuilding => VolumeHealthState.Rebuilding,
        _ => VolumeHealthState.Failed,
    };

    public ImmutableArray<DiskStatus> Members
        => [.. volume.Members.Select(m => new DiskStatus(
            m.Index,
            MemberDisks.Describe(_locations[m.Index]),
            m.State switch
            {
                MemberState.Active => DiskState.Active,
                MemberState.Failed => DiskState.Failed,
                MemberState.Rebuilding => DiskState.Rebuilding,
                MemberState.Resyncing => DiskState.Resyncing,
                _ => DiskState.Missing,
            }))];

    public (long First, long Last) StripeRange(long offsetBytes, long lengthBytes)
        => volume.StripeRange(offsetBytes, lengthBytes);

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken) =>
        volume.ReadAsync(offsetBytes, destination, cancellationToken);

    public ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        long writeTimestamp,
        bool forceUnitAccess,
        CancellationToken cancellationToken) =>
        volume.WriteAsync(offsetBytes, source, writeTimestamp, forceUnitAccess, cancellationToken);

    public ValueTask ReadBlockTimestampsAsync(
        long offsetBytes,
        Memory<long> timestamps,
        CancellationToken cancellationToken) =>
        volume.ReadBlockTimestampsAsync(offsetBytes, timestamps, boundMissing: false, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => volume.FlushAsync(cancellationToken);

    public ValueTask FlushEveryMemberAsync(CancellationToken cancellationToken) =>
        volume.FlushEveryMemberAsync(cancellationToken);

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken)
        => volume.TrimAsync(offsetBytes, lengthBytes, cancellationToken);

    public async ValueTask FailMemberAsync(int memberIndex, string reason)
    {
        try
        {
            await volume.FailMemberAsync(memberIndex, reason);
        }
        catch (InvalidOperationException ex)
        {
            throw new CloudRequestException($"disk {memberIndex} of volume '{info.Name}': {ex.Message}");
        }
    }

    public async ValueTask ReplaceMemberAsync(
        int memberIndex,
        string path,
        IBlockDevice? made,
        CancellationToken cancellationToken)
    {
        var size = volume.MemberBytesNeeded;
        var device = made
            ?? await RaidVolumeStoreFactory.CreateMemberAsync(disks, info.Name, path, size, cancellationToken);
        try
        {
            await volume.ReplaceMemberAsync(memberIndex, device, cancellationToken);
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            await device.DisposeAsync();
            // A disk the caller made is the caller's to remove (on its host).
            if (made is null && MemberDisks.IsFile(path)) File.Delete(path);
            throw new CloudRequestException($"disk {memberIndex} of volume '{info.Name}': {ex.Message}");
        }
        if (devices[memberIndex] is { } old) _retired.Add(old);
        devices[memberIndex] = device;
        _locations[memberIndex] = path;
    }

    public long RebuildCursorStripes => volume.RebuildCursorStripes;

    public long RebuildBytesMoved => volume.RebuildBytesMoved;

    public ValueTask RebuildStripesAsync(
        long endStripe,
        IProgress<(long Done, long Total, long BytesMoved)>? progress,
        CancellationToken cancellationToken) =>
        volume.RebuildStripesAsync(endStripe, progress is null ? null : new Progress(progress), cancellationToken);

    public async ValueTask<ScrubResult> ScrubStripesAsync(
        long firstStripe,
        long lastStripe,
        bool repair,
        CancellationToken cancellationToken)
    {
        var report = await volume.ScrubStripesAsync(firstStripe, lastStripe, repair, cancellationToken);
        return new ScrubResult(
            report.StripesChecked, report.ParityMismatches, report.ChecksumErrors, report.Repaired, report.Unrecoverable);
    }

    public Guid VolumeId => volume.Definition.VolumeId;

    public async ValueTask RefreshMembersAsync(CancellationToken cancellationToken)
        => await volume.RefreshMembersAsync(null, cancellationToken);

    public IReadOnlyList<int> WriterSlotsToRecover => writerSlotsToRecover;

    public async ValueTask<long> RecoverWriterSlotAsync(int writerSlot, CancellationToken cancellationToken) =>
        await volume.RecoverWriterSlotAsync(writerSlot, cancellationToken);

    public void ForgetPartialParityIndex() => volume.ForgetPartialParityIndex();

    public ValueTask<IReadOnlyList<(long First, long End)>> MarkedStripesOfSlotAsync(
        int writerSlot,
        CancellationToken cancellationToken) =>
        volume.MarkedStripesOfSlotAsync(writerSlot, cancellationToken);

    public async ValueTask<long> ResyncStripesAsync(
        long firstStripe,
        long endStripe,
        CancellationToken cancellationToken) =>
        await volume.ResyncStripesAsync(firstStripe, endStripe, cancellationToken);

    public async ValueTask ClearWriterSlotAsync(int writerSlot, CancellationToken cancellationToken) =>
        await volume.ClearWriterSlotAsync(writerSlot, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        // The volume does not own its devices: close it first, then them.
        await volume.DisposeAsync();
        foreach (var d in devices) if (d is not null) await d.DisposeAsync();
        foreach (var d in _retired) await d.DisposeAsync();
    }

    private sealed class Progress(IProgress<(long Done, long Total, long BytesMoved)> inner) : IProgress<RebuildProgress>
    {
        public void Report(RebuildProgress value) =>
            inner.Report((value.StripesDone, value.StripesTotal, value.BytesMoved));
    }
}

/// <summary>
/// Creates and assembles <see cref="RaidVolume"/>s over member disks opened by the silo's
/// <see cref="BlockDeviceFactory"/>
/// (files, and page blobs when the silo has a page-blob account). Each silo writes through
/// its own write-intent slot (assigned once per silo name by the catalog), so that no intent-bitmap sector is
/// shared between processes; only a silo that is alone in the cluster resyncs every slot on assembly.
/// </summary>
internal sealed class RaidVolumeStoreFactory(
    IGrainFactory grains,
    Orleans.Runtime.ILocalSiloDetails silo,
    Orleans.Runtime.IClusterMembershipService membership,
    BlockDeviceFactory disks,
    ClusterSuperblockCoordinator coordinator,
    Disks.HostDisks hosts,
    Microsoft.Extensions.Options.IOptions<Hosting.CloudOptions> cloudOptions) : IVolumeStoreFactory
{
    /// <summary>
    /// Opens (creating at <paramref name="sizeBytes"/> if absent) the member at a catalog location; a request the silo
    /// cannot serve is a <see cref="CloudRequestException"/>.
    /// </summary>
    internal static async ValueTask<IBlockDevice> CreateMemberAsync(
        BlockDeviceFactory disks,
        string volumeName,
        string location,
        long sizeBytes,
        CancellationToken cancellationToken)
    {
        var disk = MemberDisks.FromLocation(location);
        try
        {
            if (disk is FileDisk file) Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(file.Path))!);
            return await disks.OpenAsync(disk, sizeBytes, cancellationToken);
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or BlockDeviceException)
        {
            // No account configured, a blob of another size or type, an unreachable account: the operator's to fix.
            throw new CloudRequestException($"volume '{volumeName}': {ex.Message}", ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A path that cannot be a file (a file where a directory must be, no permission, a full disk).
            throw new CloudRequestException($"volume '{volumeName}': disk {disk} cannot be created: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Opens an existing member, or null when it is gone or unreachable (the volume then assembles degraded).
    /// </summary>
    private async ValueTask<IBlockDevice?> OpenMemberAsync(string location, CancellationToken cancellationToken)
    {
        var disk = MemberDisks.FromLocation(location);
        if (disk is FileDisk file) return File.Exists(file.Path) ? new FileBlockDevice(file.Path) : null;
        try
        {
            return await disks.OpenAsync(disk, null, cancellationToken);
        }
        catch (BlockDeviceException)
        {
            return null;
        }
    }

    private int _slot = -1;

    private async ValueTask<RaidVolumeOptions> OptionsAsync()
    {
        // A silo opening a volume right after another died (say, a read reaching the engine here first) may find the
        // writer-slots grain, or its directory entry, on the dead silo: ask again until it is placed anew.
        if (_slot < 0)
            _slot = await Hosting.SiloFailures.RetryAsync(
                () => grains.GetGrain<IWriterSlotsGrain>(0).GetWriterSlotAsync(silo.Name),
                cloudOptions.Value.RedelegationTimeout);
        var active = membership.CurrentSnapshot.Members.Values.Count(
            m => m.Status == Orleans.Runtime.SiloStatus.Active);
        // Superblock updates of every silo go through one lease per volume (the default lock is per process). The
        // engine resyncs no intent marks at assembly: other silos may be writing those stripes, and only their
        // partition locks, which the caller takes (WriterSlotRecovery), make a resync safe.
        return new RaidVolumeOptions
        {
            WriterSlot = _slot,
            RecoverAllWriterSlots = active <= 1,
            RecoverOnAssemble = false,
            SuperblockCoordinator = coordinator
        };
    }

    private static VolumeDefinition Definition(VolumeInfo v) =>
        new(v.Name, v.VolumeId, new VolumeGeometry((RaidLevel)(int)v.Level, v.DiskCount, v.ChunkSizeBytes));

    public async ValueTask<IVolumeStore> CreateAsync(
        VolumeInfo volume,
        long memberSizeBytes,
        CancellationToken cancellationToken)
    {
        var devices = new IBlockDevice?[volume.DiskCount];
        // Members this call makes (absent before it): a create that fails half-way removes them again, and only them.
        var made = new bool[volume.DiskCount];
        try
        {
            // Refused before any member is made, so that no file is left behind by a request this silo cannot serve.
            if (!disks.SupportsPageBlobs
                && volume.DiskPaths.FirstOrDefault(p => MemberDisks.FromLocation(p) is PageBlobDisk) is { } blob)
                throw new CloudRequestException(
                    $"volume '{volume.Name}': disk '{blob}' is a page blob, but this silo has no page-blob account configured (PageBlobs:ConnectionString or PageBlobs:ServiceUri, or Cloud:Azure:ConnectionString / Cloud:Azure:BlobEndpoint)");
            for (var i = 0; i < devices.Length; i++)
            {
                // Another host's file is made by that host's disk service; the catalog removes it if the create fails.
                var remote = await hosts.CreateRemoteAsync(volume, i, memberSizeBytes, cancellationToken);
                made[i] = remote is null && !await MemberExistsAsync(volume.DiskPaths[i], cancellationToken);
                devices[i] = remote ?? await CreateMemberAsync(
                    disks, volume.Name, volume.DiskPaths[i], memberSizeBytes, cancellationToken);
            }
            RaidVolumeOptions engineOptions = await OptionsAsync();
            engineOptions.PartialParityLog = cloudOptions.Value.PartialParityLog
                && Disks.MemberPlacement.KeepsPartialParityLog(volume);
            var raid = await RaidVolume.CreateAsync(Definition(volume), devices!, engineOptions, cancellationToken);
            // A new volume has no marks to recover.
            return new RaidVolumeStore(raid, devices, volume, disks, []);
        }
        catch (ArgumentException ex)
        {
            await UndoCreateAsync(volume, devices, made);
            throw new CloudRequestException($"volume '{volume.Name}': {ex.Message}", ex);
        }
        catch
        {
            await UndoCreateAsync(volume, devices, made);
            throw;
        }
    }

    private async ValueTask<bool> MemberExistsAsync(string location, CancellationToken cancellationToken)
    {
        try
        {
            return await disks.ExistsAsync(MemberDisks.FromLocation(location), cancellationToken);
        }
        catch (Exception ex) when (ex is Azure.RequestFailedException or IOException or UnauthorizedAccessException)
        {
            // Unknown: treat it as existing, so that a failed create never deletes it. Opening it reports the cause.
            return true;
        }
    }

    /// <summary>Closes what a failed create opened and deletes the members it made, so a retry starts clean.</summary>
    private async ValueTask UndoCreateAsync(VolumeInfo volume, IBlockDevice?[] devices, bool[] made)
    {
        foreach (var d in devices) if (d is not null) await d.DisposeAsync();
        for (var i = 0; i < made.Length; i++)
        {
            if (!made[i]) continue;
            try
            {
                await disks.DeleteAsync(MemberDisks.FromLocation(volume.DiskPaths[i]), CancellationToken.None);
            }
            catch (Exception ex) when (ex is Azure.RequestFailedException or IOException or UnauthorizedAccessException)
            {
                // Best effort: what is left is an unused, unformatted member, refused by nothing and reused by a retry.
            }
        }
    }

    public async ValueTask<IVolumeStore> OpenAsync(VolumeInfo volume, CancellationToken cancellationToken)
    {
        var devices = new IBlockDevice?[volume.DiskCount];
        try
        {
            for (var i = 0; i < devices.Length; i++)
                devices[i] = hosts.IsRemote(volume.MemberHost(i))
                    ? await hosts.OpenRemoteAsync(volume, i, cancellationToken)
                    : await OpenMemberAsync(volume.DiskPaths[i], cancellationToken);
            var options = await OptionsAsync();
            RaidVolume raid;
            // A failed or replaced member's disk is refused by name; leave it out and assemble degraded, as md does.
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    raid = await RaidVolume.AssembleAsync(devices, options, cancellationToken);
                    break;
                }
                catch (VolumeFormatException ex)
                    when (ex.MemberIndex >= 0
                        && ex.MemberIndex < devices.Length
                        && devices[ex.MemberIndex] is not null
                        && attempt < devices.Length)
                {
                    await devices[ex.MemberIndex]!.DisposeAsync();
                    devices[ex.MemberIndex] = null;
                }
            }
            if (raid.Definition.VolumeId != volume.VolumeId)
            {
                await raid.DisposeAsync();
                throw new VolumeFormatException(
                    $"the disks of volume '{volume.Name}' belong to volume {raid.Definition.VolumeId}, not {volume.VolumeId}");
            }
            IReadOnlyList<int> slots = options.RecoverAllWriterSlots
                ? [.. Enumerable.Range(0, OnDiskFormat.IntentSlotCount)]
                : [options.WriterSlot];
            return new RaidVolumeStore(raid, devices, volume, disks, slots);
        }
        catch
        {
            foreach (var d in devices) if (d is not null) await d.DisposeAsync();
            throw;
        }
    }

    public long MemberSizeBytes(VolumeSpec spec, bool spread)
    {
        var partialParityLog = cloudOptions.Value.PartialParityLog && Disks.MemberPlacement.KeepsPartialParityLog(spec.Level, spread);
        var stripeData = VolumeMath.StripeDataBytes(spec.Level, spec.DiskCount, spec.ChunkSizeBytes);
        var stripes = (spec.SizeBytes + stripeData - 1) / stripeData;
        return OnDiskFormat.DataOffsetBytes + stripes * OnDiskFormat.ChunkStrideBytes(spec.ChunkSizeBytes)
            + (partialParityLog
                ? OnDiskFormat.PartialParityAreaBytes(OnDiskFormat.PartialParitySlotBytes(spec.ChunkSizeBytes))
                : 0);
    }
}
