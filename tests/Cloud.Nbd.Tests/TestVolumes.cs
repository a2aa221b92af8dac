using Cloud.Storage.Volumes;
#if HAS_RAID_VOLUME
using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
#endif

namespace Cloud.Nbd.Tests;

/// <summary>
/// The volume the interop tests serve: a RAID-5 4+1 <c>RaidVolume</c> over memory members once the engine's
/// RaidVolume is in the tree (the project defines HAS_RAID_VOLUME when RaidVolume.cs exists), else the
/// in-memory test volume.
/// </summary>
internal static class TestVolumes
{
    /// <summary>Room per member for superblocks and per-block metadata on top of the data.</summary>
    private const long MemberOverheadBytes = 16L << 20;

    public static async ValueTask<IBlockVolume> CreateAsync(string name, long capacityBytes, string directory)
    {
#if HAS_RAID_VOLUME
        var geometry = new VolumeGeometry(RaidLevel.Raid5, 5, VolumeGeometry.DefaultChunkSizeBytes);
        long memberBytes = (capacityBytes / geometry.DataMemberCount) + MemberOverheadBytes;
        var members = Enumerable.Range(0, 5).Select(i => (IBlockDevice)new MemoryBlockDevice(memberBytes, $"{name}-m{i}")).ToList();
        return await RaidVolume.CreateAsync(new VolumeDefinition(name, Guid.NewGuid(), geometry), members);
#else
        await Task.CompletedTask;
        return new MemoryVolume(name, capacityBytes);
#endif
    }

    public static ValueTask DisposeAsync(IBlockVolume volume)
        => volume is IAsyncDisposable d ? d.DisposeAsync() : ValueTask.CompletedTask;
}
