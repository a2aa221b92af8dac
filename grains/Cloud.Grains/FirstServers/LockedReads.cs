using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;

namespace Cloud.Grains.FirstServers;

/// <summary>
/// Reads whole blocks for a first server that holds a partition lock on their stripes: from this silo's engine when
/// it reaches the volume's members, else through the RAID worker of a silo that does (<see cref="VolumeWorkers"/>,
/// which waits out that silo's death).
/// </summary>
/// <remarks>
/// This silo's own worker is called directly (its <see cref="OpenVolumeCache"/>): a grain call would only add a
/// scheduler hop and a copy of the data, and change nothing about the partition lock the caller holds.
/// </remarks>
public sealed class LockedReads(OpenVolumeCache worker, VolumeReach reach, VolumeWorkers workers)
{
    /// <summary>
    /// Reads the block-aligned range at <paramref name="offsetBytes"/> into <paramref name="destination"/>; the
    /// caller holds a lock covering its stripes.
    /// </summary>
    public async Task ReadAsync(VolumeInfo v, long offsetBytes, Memory<byte> destination)
    {
        // The engine knows nothing of Orleans: its errors become ones every caller can deserialize, as the RAID
        // worker grain would have made them.
        if (reach.ReachesHere(v))
        {
            await EngineErrors.Guard(() => worker.ReadIntoAsync(v.Name, offsetBytes, destination)).ConfigureAwait(false);
        }
        else
        {
            var data = await workers.CallAsync(v, w => w.ReadAsync(v.Name, offsetBytes, destination.Length))
                .ConfigureAwait(false);
            data.CopyTo(destination);
        }
    }
}
