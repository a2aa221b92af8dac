using Cloud.Client;
using Cloud.Grains.Abstractions;

namespace Cloud.HostBed;

/// <summary>
/// The failover tests' and trials' volume: RAID-5 on four Azure page blobs, which every host of the bed reaches (a
/// file member would live in one host's private directory, out of the others' reach). Small chunks, so the volume has
/// many stripes and, with the bed's 1 MiB partitions, 17 partition-lock grains spread over the hosts.
/// </summary>
public static class PageBlobVolumes
{
    /// <summary>Size of the volume.</summary>
    public const long VolumeBytes = 16L << 20;

    /// <summary>Chunk size.</summary>
    public const int ChunkBytes = 16 << 10;

    /// <summary>Member disks (3 data + 1 parity per stripe).</summary>
    public const int DiskCount = 4;

    /// <summary>
    /// The spec of volume <paramref name="name"/>: its members are page blobs <c>m0</c>..<c>m3</c> in a container named
    /// after the volume, so two volumes never share a blob. Azure container names are 3-63 lowercase letters, digits
    /// and dashes, so <paramref name="name"/> must be one too.
    /// </summary>
    public static VolumeSpec Spec(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Length is < 3 or > 63 || name.Any(c => c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '-')))
            throw new ArgumentException(
                $"volume name '{name}' is not allowed here; use 3-63 of a-z 0-9 - (it names the page-blob container)",
                nameof(name));
        return new VolumeSpec(name, VolumeBytes, VolumeLevel.Raid5, DiskCount, ChunkBytes, Durable: false)
        {
            Disks = [.. Enumerable.Range(0, DiskCount).Select(i => $"pageblob:{name}/m{i}")],
        };
    }

    /// <summary>Creates volume <paramref name="name"/> on page blobs and opens it.</summary>
    public static async Task<CloudVolume> CreateAsync(CloudClient client, string name)
    {
        ArgumentNullException.ThrowIfNull(client);
        await client.CreateVolumeAsync(Spec(name)).ConfigureAwait(false);
        return await client.OpenVolumeAsync(name).ConfigureAwait(false);
    }
}
