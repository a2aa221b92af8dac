using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.NbdHost;

/// <summary>Builds the served volume from files in one directory.</summary>
internal static class BenchVolumes
{
    public static async ValueTask<IBlockVolume> CreateAsync(
        string layout,
        string dir,
        string name,
        int members,
        long memberBytes,
        int chunkBytes)
    {
        switch (layout)
        {
            case "file":
                return new DeviceVolume(
                    name, new FileBlockDevice(Path.Combine(dir, "disk0.img"), memberBytes), 4 << 20);
            case "raid5":
            case "raid6":
            {
                var level = layout == "raid5" ? RaidLevel.Raid5 : RaidLevel.Raid6;
                var devices = new List<IBlockDevice>();
                for (var i = 0; i < members; i++)
                {
                    // A fresh volume each run: old member files would hold a foreign superblock.
                    var path = Path.Combine(dir, $"disk{i}.img");
                    File.Delete(path);
                    devices.Add(new FileBlockDevice(path, memberBytes));
                }
                var geometry = new VolumeGeometry(level, members, chunkBytes);
                return await RaidVolume.CreateAsync(new VolumeDefinition(name, Guid.NewGuid(), geometry), devices);
            }
            default:
                throw new ArgumentException($"--layout '{layout}' is not known; allowed: raid5, raid6, file");
        }
    }
}
