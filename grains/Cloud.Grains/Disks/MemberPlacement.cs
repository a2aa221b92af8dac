using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Disks;

/// <summary>
/// Places a new volume's members on the hosts' disk pools, one member per host, so that a host's loss is one
/// member's: the hosts with the most free pool space first (ties by name, so the choice is deterministic).
/// </summary>
public sealed class MemberPlacement(
    LoadTable loadTable,
    HostDisks hostDisks,
    IClusterMembershipService membership,
    IOptions<CloudOptions> options,
    TimeProvider time)
{
    /// <summary>Longest wait for a live silo's load entry before placement answers with the hosts it has.</summary>
    public static readonly TimeSpan PublishWaitMax = TimeSpan.FromSeconds(10);

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

    /// <summary>
    /// <see cref="PoolHosts"/>, once it satisfies <paramref name="enough"/>, or once no active silo of the membership
    /// lacks a fresh load entry, or after three entry lifetimes (at most <see cref="PublishWaitMax"/>), whichever comes
    /// first. A host whose publish is late (a busy machine; its entry is dropped after
    /// <see cref="CloudOptions.LoadEntryTimeToLive"/>) is still a member of the cluster: placement waits for its next
    /// publish rather than refuse a volume for want of hosts (a six-host bed under load refused a RAID-6 a moment
    /// after the cluster status had listed all six pools). A cluster that really has too few hosts answers at once.
    /// </summary>
    public async Task<IReadOnlyList<(string Host, long FreeBytes)>> PoolHostsAsync(
        Func<IReadOnlyList<(string Host, long FreeBytes)>, bool> enough)
    {
        ArgumentNullException.ThrowIfNull(enough);
        var o = options.Value;
        var wait = o.LoadEntryTimeToLive * 3;
        var deadline = time.GetUtcNow() + (wait < PublishWaitMax ? wait : PublishWaitMax);
        while (true)
        {
            // Membership first, pools second: a publish landing between the two reads then shows in the hosts
            // (asked the other way round, the third host's entry could arrive after the hosts were counted and
            // before the membership was checked, and placement answered with two hosts of three).
            var unpublished = AnActiveSiloIsUnpublished();
            var hosts = PoolHosts();
            if (enough(hosts) || !unpublished || time.GetUtcNow() >= deadline) return hosts;
            await Task.Delay(o.LoadPublishPeriod, time).ConfigureAwait(false);
        }
    }

    private bool AnActiveSiloIsUnpublished()
    {
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active && loadTable.Find(member.SiloAddress.ToParsableString()) is null)
                return true;
        }
        return false;
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
        var hosts = await PoolHostsAsync(h => h.Count >= spec.DiskCount).ConfigureAwait(false);
        if (hosts.Count < spec.DiskCount)
            throw new CloudRequestException(
                $"volume '{spec.Name}' needs {spec.DiskCount} hosts with a disk pool, one per member, but {hosts.Count} {(hosts.Count == 1 ? "has" : "have")} one ({string.Join(", ", hosts.Select(h => h.Host))}); start silos with --disk-pool on more hosts, ask for fewer --disks, or name the disks with --disk");
        var paths = ImmutableArray.CreateBuilder<string>(spec.DiskCount);
        for (var i = 0; i < spec.DiskCount; i++)
            paths.Add(await hostDisks.PlaceAsync(hosts[i].Host, $"{folder}/disk{i}.img", memberSizeBytes));
        return (paths.MoveToImmutable(), [.. hosts.Take(spec.DiskCount).Select(h => h.Host)]);
    }

    /// <summary>
    /// The host for a new member <paramref name="index"/> of <paramref name="volume"/>: the first of
    /// <paramref name="poolHosts"/> (most free first, as <see cref="PoolHosts"/> lists them) that holds no other member
    /// of the volume and has <paramref name="sizeBytes"/> free, so that a host's loss stays one member's. The replaced
    /// member's own host takes it back only when no other host can (its disk may be why the member failed). Null when
    /// no host is eligible.
    /// </summary>
    public static string? ChooseReplacementHost(
        IReadOnlyList<(string Host, long FreeBytes)> poolHosts,
        VolumeInfo volume,
        int index,
        long sizeBytes)
    {
        var own = volume.MemberHost(index);
        string? fallback = null;
        foreach (var (host, free) in poolHosts)
        {
            if (free < sizeBytes || HoldsOtherMember(volume, index, host) is not null) continue;
            if (host != own) return host;
            fallback = host;
        }
        return fallback;
    }

    /// <summary>The index of a member of <paramref name="volume"/> other than <paramref name="index"/> on
    /// <paramref name="host"/>, or null when it holds none.</summary>
    public static int? HoldsOtherMember(VolumeInfo volume, int index, string host)
    {
        for (var i = 0; i < volume.DiskCount; i++)
        {
            if (i != index && volume.MemberHost(i) == host) return i;
        }
        return null;
    }

    /// <summary>
    /// Whether <paramref name="volume"/> is spread over several hosts' files, one member per host (a pool volume):
    /// its replacements go to another host's pool, not next to the old member.
    /// </summary>
    public static bool IsSpread(VolumeInfo volume) =>
        Volumes.VolumeReach.RequiredHost(volume) is null
        && Enumerable.Range(0, volume.DiskCount).Any(i => volume.MemberHost(i) is not null);

    /// <summary>
    /// Whether a volume of <paramref name="level"/> spread over hosts (<see cref="IsSpread"/>, or about to be placed so)
    /// keeps the engine's partial parity log: a host's kill is both a writer's crash and the loss of its member, which
    /// the write-intent resync alone cannot settle (docs/WRITE-HOLE.md).
    /// </summary>
    public static bool KeepsPartialParityLog(VolumeLevel level, bool spread) =>
        spread && level is VolumeLevel.Raid5 or VolumeLevel.Raid6;

    /// <inheritdoc cref="KeepsPartialParityLog(VolumeLevel, bool)"/>
    public static bool KeepsPartialParityLog(VolumeInfo volume) => KeepsPartialParityLog(volume.Level, IsSpread(volume));

    /// <summary>
    /// The host and path in its pool of a replacement for member <paramref name="index"/> of
    /// <paramref name="volume"/>: on <paramref name="requestedHost"/> when given, else on the eligible host with the
    /// most free pool space (<see cref="ChooseReplacementHost"/>). The file is named
    /// <c>POOL/{folder}/disk{index}.{stamp}.img</c>, in the volume's pool folder, so that deleting the volume deletes
    /// it. The disk service of the host creates it when the volume's worker replaces the member.
    /// </summary>
    /// <exception cref="CloudRequestException">The requested host holds another member or has no pool with room, or
    /// no host is eligible.</exception>
    public async Task<(string Host, string Path)> PlaceReplacementAsync(
        VolumeInfo volume,
        int index,
        string? requestedHost,
        string folder,
        string stamp,
        long sizeBytes)
    {
        var hosts = await PoolHostsAsync(h => requestedHost is null
            ? ChooseReplacementHost(h, volume, index, sizeBytes) is not null
            : h.Any(p => p.Host == requestedHost)).ConfigureAwait(false);
        string host;
        if (requestedHost is not null)
        {
            if (HoldsOtherMember(volume, index, requestedHost) is { } other)
                throw new CloudRequestException(
                    $"host '{requestedHost}' already holds member {other} of volume '{volume.Name}'; a host holds one member of a volume, so that its loss is one member's; choose another host or omit --host");
            if (!hosts.Any(h => h.Host == requestedHost))
                throw new CloudRequestException(
                    $"host '{requestedHost}' has no live silo with a disk pool; hosts with one: {Describe(hosts)}");
            host = requestedHost;
        }
        else
        {
            host = ChooseReplacementHost(hosts, volume, index, sizeBytes)
                ?? throw new CloudRequestException(NoEligibleHost(volume, index, hosts, sizeBytes));
        }
        return (host, await hostDisks.PlaceAsync(host, $"{folder}/disk{index}.{stamp}.img", sizeBytes));
    }

    /// <summary>Why no host can take a new member <paramref name="index"/> of <paramref name="volume"/>.</summary>
    public static string NoEligibleHost(
        VolumeInfo volume,
        int index,
        IReadOnlyList<(string Host, long FreeBytes)> hosts,
        long sizeBytes) =>
        $"no host can take member {index} of volume '{volume.Name}': it needs a live host with a disk pool of {sizeBytes} free bytes that holds no other member of the volume; hosts with a pool: {Describe(hosts)}; start a silo with --disk-pool on another host";

    private static string Describe(IReadOnlyList<(string Host, long FreeBytes)> hosts) =>
        hosts.Count == 0 ? "none" : string.Join(", ", hosts.Select(h => $"{h.Host} ({h.FreeBytes} bytes free)"));

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
