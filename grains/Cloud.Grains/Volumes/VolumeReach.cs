using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.Volumes;

/// <summary>
/// Which silos reach a volume's members. A silo is <em>eligible</em> for a volume (the patent's word) when it reaches
/// every member: each is shared (a page blob, a shared block device), a file of this silo's host, or a file of another
/// host served by that host's disk service (<see cref="Disks.HostDisks"/>). Only an eligible silo opens the volume, so
/// only a silo that reaches a member ever fails it on evidence; delegation places a unit among eligible silos only,
/// and a first server on a silo that reaches nothing reads through an eligible one.
/// </summary>
/// <remarks>
/// A volume whose files are all on one host stays that host's: every silo could reach them through the disk service,
/// but the host's loss is the volume's loss either way, so sending its data over the network would buy no
/// availability and cost a hop per I/O. A volume whose files are on several hosts (one member per host, from the
/// disk pools) is every silo's: a host's loss is one member's, and any silo can be the delegate.
/// </remarks>
public sealed class VolumeReach(LoadTable loadTable, ILocalSiloDetails silo, IOptions<CloudOptions> options)
{
    /// <summary>This silo's host.</summary>
    public string HostName => options.Value.HostName;

    /// <summary>
    /// The one host whose silos alone serve <paramref name="volume"/>, or null when every host's do: all members shared,
    /// a volume recorded before hosts were, or a volume with files on several hosts (reached through the disk service).
    /// </summary>
    public static string? RequiredHost(VolumeInfo volume)
    {
        ArgumentNullException.ThrowIfNull(volume);
        string? host = null;
        for (var i = 0; i < volume.DiskCount; i++)
        {
            if (volume.MemberHost(i) is not { } h) continue;
            if (host is not null && host != h) return null;
            host = h;
        }
        return host;
    }

    /// <summary>Whether silos of <paramref name="hostName"/> reach every member of <paramref name="volume"/>.</summary>
    public static bool Reaches(VolumeInfo volume, string hostName)
        => RequiredHost(volume) is not { } h || h == hostName;

    /// <summary>Whether this silo reaches every member of <paramref name="volume"/>.</summary>
    public bool ReachesHere(VolumeInfo volume) => Reaches(volume, HostName);

    /// <summary>Refuses to open a volume this silo does not reach, naming the member, its host and this silo.</summary>
    public void CheckReachesHere(VolumeInfo volume)
    {
        if (RequiredHost(volume) is not { } host || host == HostName) return;
        var member = Enumerable.Range(0, volume.DiskCount).First(i => volume.MemberHost(i) is not null);
        throw new CloudRequestException(
            $"silo '{silo.Name}' on host '{HostName}' does not reach volume '{volume.Name}': member {member} is a file on host '{host}'");
    }

    /// <summary>
    /// The silo whose RAID worker serves <paramref name="volume"/> for this silo: this one when it is eligible, else
    /// the least-loaded live eligible silo of the load table.
    /// </summary>
    /// <exception cref="CloudStorageException">No live silo reaches the volume; the message says which host to
    /// start.</exception>
    public string WorkerSiloFor(VolumeInfo volume)
    {
        if (RequiredHost(volume) is not { } host || host == HostName) return silo.Name;
        SiloLoad? best = null;
        foreach (var entry in loadTable.Entries)
        {
            if (entry.HostName != host || entry.Draining || loadTable.Find(entry.SiloAddress) is null) continue;
            if (best is null || loadTable.EffectiveScore(entry) < loadTable.EffectiveScore(best)) best = entry;
        }
        return best?.SiloName ?? throw NoSiloReaches(volume, host);
    }

    /// <summary>The error of a volume whose host has no live silo.</summary>
    public static CloudStorageException NoSiloReaches(VolumeInfo volume, string host) =>
        new(
            $"no live silo reaches volume '{volume.Name}': its members are files on host '{host}'; start a silo there (--host-name {host}) or replace the members");
}
