using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.Nbd.Tests;

/// <summary>
/// The volume the interop tests serve: the engine's RAID-5 4+1 <see cref="RaidVolume"/> over memory members.
/// </summary>
internal static class TestVolumes
{
    /// <summary>Room per member for superblocks and per-block metadata on top of the data.</summary>
    private const long MemberOverheadBytes = 16L << 20;

    public static async ValueTask<IBlockVolume> CreateAsync(string name, long capacityBytes)
    {
        var geometry = new VolumeGeometry(RaidLevel.Raid5, 5, VolumeGeometry.DefaultChunkSizeBytes);
        var memberBytes = (capacityBytes / geometry.DataMemberCount) + MemberOverheadBytes;
        var members = Enumerable.Range(
            0, 5).Select(i => (IBlockDevice)new MemoryBlockDevice(memberBytes, $"{name}-m{i}")).ToList();
        return await RaidVolume.CreateAsync(new VolumeDefinition(name, Guid.NewGuid(), geometry), members);
    }

    public static ValueTask DisposeAsync(IBlockVolume volume)
        => volume is IAsyncDisposable d ? d.DisposeAsync() : ValueTask.CompletedTask;
}
