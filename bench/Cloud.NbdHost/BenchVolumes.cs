using Cloud.Storage.Devices;
using Cloud.Storage.Volumes;
#if HAS_RAID_VOLUME
using Cloud.Storage.Layout;
#endif

namespace Cloud.NbdHost;

/// <summary>Builds the served volume from files in one directory.</summary>
internal static class BenchVolumes
{
    public static async ValueTask<IBlockVolume> CreateAsync(string layout, string dir, string name, int members, long memberBytes, int chunkBytes)
    {
        await Task.CompletedTask;
        switch (layout)
        {
            case "file":
                return new DeviceVolume(name, new FileBlockDevice(Path.Combine(dir, "disk0.img"), memberBytes), 4 << 20);
#if HAS_RAID_VOLUME
            case "raid5":
            case "raid6":
            {
                var level = layout == "raid5" ? RaidLevel.Raid5 : RaidLevel.Raid6;
                var devices = new List<IBlockDevice>();
                for (int i = 0; i < members; i++)
                {
                    string path = Path.Combine(dir, $"disk{i}.img");
                    File.Delete(path);
                    devices.Add(new FileBlockDevice(path, memberBytes));
                }
                var geometry = new VolumeGeometry(level, members, chunkBytes);
                return await RaidVolume.CreateAsync(new VolumeDefinition(name, Guid.NewGuid(), geometry), devices);
            }
#endif
            default:
                throw new ArgumentException($"--layout '{layout}' is not known; allowed: file"
#if HAS_RAID_VOLUME
                    + ", raid5, raid6"
#else
                    + " (raid5 and raid6 arrive with the engine's RaidVolume)"
#endif
                    );
        }
    }
}
