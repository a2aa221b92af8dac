using Cloud.Grains.Abstractions;

namespace Cloud.Grains.Disks;

/// <summary>
/// The decisions of the automatic rebuild after a host's permanent loss, kept apart from the grain that acts on them
/// so that they are tested without a cluster: since when each host that holds members has been absent, and which
/// members are due for a rebuild elsewhere once <see cref="Hosting.CloudOptions.HostDownRebuildDelay"/> has passed.
/// </summary>
public sealed class HostDownRebuildPlan
{
    /// <summary>The fewest seconds between two checks of the hosts, whatever the delay.</summary>
    public static readonly TimeSpan CheckIntervalMin = TimeSpan.FromSeconds(1);

    /// <summary>The most time between two checks, so that a long delay is still kept to within half a minute.</summary>
    public static readonly TimeSpan CheckIntervalMax = TimeSpan.FromSeconds(30);

    private readonly Dictionary<string, DateTimeOffset> _absentSince = new(StringComparer.Ordinal);

    /// <summary>How often the hosts are checked for <paramref name="delay"/>: a quarter of it, within
    /// <see cref="CheckIntervalMin"/>-<see cref="CheckIntervalMax"/>.</summary>
    public static TimeSpan CheckInterval(TimeSpan delay) =>
        TimeSpan.FromTicks(Math.Clamp(delay.Ticks / 4, CheckIntervalMin.Ticks, CheckIntervalMax.Ticks));

    /// <summary>Each absent host and when it was first seen absent, by name.</summary>
    public IReadOnlyDictionary<string, DateTimeOffset> AbsentSince => _absentSince;

    /// <summary>
    /// Records which hosts of <paramref name="volumes"/>' members are absent at <paramref name="now"/>: a host seen
    /// absent for the first time starts its clock now, a host seen present forgets it (a host back before the delay
    /// catches up instead of being rebuilt). Returns the hosts that were absent before and are present again.
    /// </summary>
    public IReadOnlyList<string> Observe(
        IEnumerable<VolumeInfo> volumes,
        Func<string, bool> isPresent,
        DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(volumes);
        ArgumentNullException.ThrowIfNull(isPresent);
        var hosts = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var v in volumes)
        {
            for (var i = 0; i < v.DiskCount; i++)
                if (v.MemberHost(i) is { } host) hosts.Add(host);
        }
        var back = new List<string>();
        foreach (var host in hosts)
        {
            if (isPresent(host))
            {
                if (_absentSince.Remove(host)) back.Add(host);
            }
            else
            {
                _absentSince.TryAdd(host, now);
            }
        }
        // A host no volume has a member on any more has nothing to rebuild.
        foreach (var gone in _absentSince.Keys.Where(h => !hosts.Contains(h)).ToList()) _absentSince.Remove(gone);
        return back;
    }

    /// <summary>
    /// The members due for a rebuild elsewhere at <paramref name="now"/>: each member of a host absent for at least
    /// <paramref name="delay"/> in a redundant volume spread over several hosts, by volume name, then member index.
    /// </summary>
    public IReadOnlyList<(VolumeInfo Volume, int Index, string Host)> Due(
        IEnumerable<VolumeInfo> volumes,
        DateTimeOffset now,
        TimeSpan delay)
    {
        var due = new List<(VolumeInfo, int, string)>();
        foreach (var v in volumes.OrderBy(v => v.Name, StringComparer.Ordinal))
        {
            // A volume of one host's files went with the host, and a RAID-0 has nothing to rebuild from.
            if (!MemberPlacement.IsSpread(v) || v.Level == VolumeLevel.Raid0) continue;
            for (var i = 0; i < v.DiskCount; i++)
            {
                if (v.MemberHost(i) is { } host
                    && _absentSince.TryGetValue(host, out var since)
                    && now - since >= delay)
                    due.Add((v, i, host));
            }
        }
        return due;
    }
}
