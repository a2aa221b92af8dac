using Cloud.Storage.Devices;
using Cloud.Storage.Volumes;

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
            default:
                throw new ArgumentException($"--layout '{layout}' is not known; allowed: file (RAID volumes arrive with RaidVolume)");
        }
    }
}
