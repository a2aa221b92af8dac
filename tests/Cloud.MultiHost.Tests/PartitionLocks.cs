using Cloud.Client;
using Cloud.Grains;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>A volume's partition-lock grains as the failover tests read them: their keys, hosts and clocks.</summary>
internal static class PartitionLocks
{
    /// <summary>The number of partitions (partition-lock grains) of <paramref name="volume"/>.</summary>
    public static long Count(VolumeInfo volume, long partitionTargetBytes)
    {
        var stripeBytes = VolumeMath.StripeDataBytes(volume);
        var stripes = (volume.SizeBytes + stripeBytes - 1) / stripeBytes;
        var stripesPerPartition = VolumeMath.StripesPerPartition(volume, partitionTargetBytes);
        return (stripes + stripesPerPartition - 1) / stripesPerPartition;
    }

    /// <summary>The volume offset of <paramref name="partition"/>'s first byte.</summary>
    public static long FirstByte(VolumeInfo volume, long partitionTargetBytes, long partition) =>
        partition * VolumeMath.StripesPerPartition(volume, partitionTargetBytes) * VolumeMath.StripeDataBytes(volume);

    /// <summary>Every partition's lock grain of <paramref name="volume"/>, in partition order.</summary>
    public static IPartitionLockGrain[] Grains(CloudClient client, VolumeInfo volume, long partitionTargetBytes) =>
        [.. Enumerable.Range(0, (int)Count(volume, partitionTargetBytes))
            .Select(p => client.Cluster.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(volume, p)))];

    /// <summary>
    /// Every partition's control object, retrying while a dead host's grains are placed anew (reading one activates
    /// its grain).
    /// </summary>
    public static async Task<PartitionControl[]> ControlsAsync(IEnumerable<IPartitionLockGrain> grains)
    {
        var controls = new List<PartitionControl>();
        foreach (var grain in grains) controls.Add(await CrashScenario.RetryAsync(grain.GetControlAsync));
        return [.. controls];
    }
}
