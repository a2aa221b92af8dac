using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;

namespace Cloud.Grains.Disks;

/// <summary>
/// Places a new volume's members on the hosts' disk pools, one member per host, so that a host's loss is one
/// member's: the hosts with the most free pool space first (ties by name, so the choice is deterministic).
/// </summary>
public sealed class MemberPlacement(LoadTable loadTable, HostDisks hostDisks)
{
    /// <summary>Each live host with a disk pool and its free pool bytes, the most free first.</summary>
    public IReadOnlyList<(string Host, long FreeBytes)> PoolHosts()
    {
        var free = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var entry in loadTable.Entries)
        {
            if (entry.PoolCapacityBytes <= 0 || entry.HostName.Length == 0 || entry.Draining) continue;
            if (loadTable.Find(entry.SiloAddress) is null) continue;
            // Silos of one host share its pools: count the host once.
            free[entry.HostName] = Math.Max(free.GetValueOrDefault(entry.HostName), entry.PoolFreeBytes);
        }
        return [.. free.Select(kv => (kv.Key, kv.Value))
            .OrderByDescending(h => h.Value)
            .ThenBy(h => h.Key, StringComparer.Ordinal)];
    }

    /// <summary>Whether any live host has a disk pool (then new volumes' members go to pools).</summary>
    public bool HasPools => PoolHosts().Count > 0;

    /// <summary>
    /// The member paths and hosts of a new volume: member <c>i</c> at <c>POOL/{folder}/disk{i}.img</c> on the
    /// <c>i</c>-th host by free space. Refuses when fewer hosts have a pool than the volume has members.
    /// </summary>
    public async Task<(ImmutableArray<string> Paths, ImmutableArray<string> Hosts)> PlaceAsync(
        VolumeSpec spec,
        string folder,
        long memberSizeBytes)
    {
        var hosts = PoolHosts();
        if (hosts.Count < spec.DiskCount)
            throw new CloudRequestException(
                $"volume '{spec.Name}' needs {spec.DiskCount} hosts with a disk pool, one per member, but {hosts.Count} {(hosts.Count == 1 ? "has" : "have")} one ({string.Join(", ", hosts.Select(h => h.Host))}); start silos with --disk-pool on more hosts, ask for fewer --disks, or name the disks with --disk");
        var paths = ImmutableArray.CreateBuilder<string>(spec.DiskCount);
        for (var i = 0; i < spec.DiskCount; i++)
            paths.Add(await hostDisks.PlaceAsync(hosts[i].Host, $"{folder}/disk{i}.img", memberSizeBytes));
        return (paths.MoveToImmutable(), [.. hosts.Take(spec.DiskCount).Select(h => h.Host)]);
    }

    /// <summary>
    /// Deletes the pool members of a volume (those in a folder named <paramref name="folder"/>), each through its
    /// host; a member whose host is down stays, and is reported in the returned list.
    /// </summary>
    public async Task<IReadOnlyList<string>> RemoveAsync(VolumeInfo volume, string folder)
    {
        var left = new List<string>();
        for (var i = 0; i < volume.DiskCount; i++)
        {
            var path = volume.DiskPaths[i];
            if (volume.MemberHost(i) is not { } host || Path.GetFileName(Path.GetDirectoryName(path)) != folder)
                continue;
            try
            {
                await hostDisks.DeleteAsync(host, path);
            }
            catch (Exception ex) when (ex is CloudStorageException or CloudRequestException or IOException
                or Orleans.Runtime.OrleansException or TimeoutException)
            {
                left.Add($"{host}:{path} ({ex.Message})");
            }
        }
        return left;
    }
}
