using System.Collections.Immutable;
using Orleans.Concurrency;

namespace Cloud.Grains.Abstractions;

/// <summary>The volume catalog: one grain (key 0) that owns volume definitions and persists them as grain state.</summary>
[Alias("cloud.IVolumeCatalogGrain")]
public interface IVolumeCatalogGrain : IGrainWithIntegerKey
{
    /// <summary>Creates the member disks, formats them and records the volume. Rejects a taken name or a bad spec.</summary>
    [Alias("Create")]
    Task<VolumeInfo> CreateAsync(VolumeSpec spec);

    /// <summary>Every volume, by name.</summary>
    [Alias("List")]
    Task<ImmutableArray<VolumeInfo>> ListAsync();

    /// <summary>One volume, or null when the name is unknown.</summary>
    [Alias("Get")]
    Task<VolumeInfo?> GetAsync(string name);

    /// <summary>Records a member's new disk file after a replacement (used by the volume grain).</summary>
    [Alias("SetDiskPath")]
    Task<VolumeInfo> SetDiskPathAsync(string name, int index, string path);

    /// <summary>
    /// Records a member's new disk file on <paramref name="host"/> after a replacement onto another host's disk pool
    /// (used by the volume grain).
    /// </summary>
    [Alias("SetMember")]
    Task<VolumeInfo> SetMemberAsync(string name, int index, string path, string host);

    /// <summary>Closes the volume on every silo, deletes its member disks and forgets it.</summary>
    [Alias("Delete")]
    Task DeleteAsync(string name);

    /// <summary>
    /// Grants <paramref name="identity"/> NBD access to volume <paramref name="volume"/> (replacing an earlier grant of
    /// the same pair). Rejects an unknown volume or a bad identity.
    /// </summary>
    [Alias("GrantNbd")]
    Task<NbdGrant> GrantNbdAsync(string identity, string volume, bool readOnly);

    /// <summary>Removes the grant of <paramref name="volume"/> to <paramref name="identity"/>; false when there was none.</summary>
    [Alias("RevokeNbd")]
    Task<bool> RevokeNbdAsync(string identity, string volume);

    /// <summary>Every NBD grant, by volume then identity.</summary>
    [Alias("ListNbdGrants")]
    Task<ImmutableArray<NbdGrant>> ListNbdGrantsAsync();
}

/// <summary>A volume's control plane (key: the volume name): health, members, disk failure and replacement, rebuild, scrub.</summary>
[Alias("cloud.IVolumeGrain")]
public interface IVolumeGrain : IGrainWithStringKey
{
    /// <summary>Health, members and rebuild progress.</summary>
    [Alias("Show")]
    Task<VolumeStatus> ShowAsync();

    /// <summary>Marks a member failed on every silo (an operator's action, or a test of redundancy).</summary>
    [Alias("FailDisk")]
    Task<VolumeStatus> FailDiskAsync(int index, string reason);

    /// <summary>Puts a fresh disk in place of a failed or missing member; the data arrives by <see cref="StartRebuildAsync"/>.</summary>
    [Alias("ReplaceDisk")]
    Task<VolumeStatus> ReplaceDiskAsync(int index);

    /// <summary>
    /// Like <see cref="ReplaceDiskAsync(int)"/>, onto the disk <paramref name="disk"/> names (<c>file:PATH</c> or
    /// <c>pageblob:CONTAINER/BLOB</c>); null = a new disk of the same kind next to the old one.
    /// </summary>
    [Alias("ReplaceDiskWith")]
    Task<VolumeStatus> ReplaceDiskWithAsync(int index, string? disk);

    /// <summary>
    /// Like <see cref="ReplaceDiskAsync(int)"/> for a volume spread over the hosts' disk pools, onto a new file in a
    /// pool of <paramref name="host"/>; refused when that host holds another member of the volume or has no pool.
    /// </summary>
    [Alias("ReplaceDiskOnHost")]
    Task<VolumeStatus> ReplaceDiskOnHostAsync(int index, string host);

    /// <summary>
    /// Records why the automatic rebuild of a lost host's member cannot start (no eligible host), shown as the
    /// volume's rebuild error until a rebuild starts.
    /// </summary>
    [Alias("ReportRebuildWaiting")]
    Task ReportRebuildWaitingAsync(string reason);

    /// <summary>Starts rebuilding replaced members in the background; returns at once.</summary>
    [Alias("StartRebuild")]
    Task<RebuildStatus> StartRebuildAsync();

    /// <summary>The running or last rebuild.</summary>
    [Alias("GetRebuild")]
    Task<RebuildStatus?> GetRebuildAsync();

    /// <summary>Progress from the RAID worker running the rebuild.</summary>
    [Alias("ReportRebuild"), OneWay]
    Task ReportRebuildAsync(RebuildStatus status);

    /// <summary>Reads every stripe and checks its parity (and checksums); repairs when asked.</summary>
    [Alias("Scrub")]
    [ResponseTimeout("01:00:00")]
    Task<ScrubResult> ScrubAsync(bool repair);
}

/// <summary>
/// The first server: a stateless worker local to the silo that received the request (the client's gateway or the
/// NBD connection's silo). It assigns timestamps, delegates writes and serves reads.
/// </summary>
/// <remarks>The alias keeps the role's former name, <c>IFirstServerGrain</c>, so that clients built before the rename still reach it.</remarks>
[Alias("cloud.IFirstServerGrain")]
public interface IFirstServerGrain : IGrainWithIntegerKey
{
    /// <summary>Writes block-aligned data. Acknowledged once replicated (or on disk for FUA and durable volumes).</summary>
    [Alias("Write")]
    Task WriteAsync(string volumeName, long offsetBytes, [Immutable] byte[] data, bool forceUnitAccess);

    /// <summary>Reads a block-aligned range; sees every write acknowledged before the call.</summary>
    [Alias("Read")]
    Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes);

    /// <summary>Returns once every write acknowledged before the call is durable.</summary>
    [Alias("Flush")]
    Task FlushAsync(string volumeName);

    /// <summary>Discards a block-aligned range (reads return zeroes).</summary>
    [Alias("Trim")]
    Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes);

    /// <summary>The volume's geometry as the data plane needs it.</summary>
    [Alias("Describe")]
    Task<VolumeStatus> DescribeAsync(string volumeName);
}

/// <summary>One silo's published usage.</summary>
[GenerateSerializer, Immutable, Alias("cloud.SiloLoad")]
public sealed record SiloLoad(
    [property: Id(0)] string SiloName,
    [property: Id(1)] string SiloAddress,
    [property: Id(2)] long PendingDelegatedBytes,
    [property: Id(3)] int QueueDepth,
    [property: Id(4)] double DiskLatencyMs,
    [property: Id(5)] double CpuPercent,
    [property: Id(6)] bool Draining,
    [property: Id(7)] DateTimeOffset PublishedUtc,
    [property: Id(8)] long DelegationsReused,
    [property: Id(9)] long DelegationsNew,
    [property: Id(10)] long WritesPerformed,
    [property: Id(11)] bool Overloaded,
    [property: Id(12)] string HostName = "",
    [property: Id(13)] long PoolCapacityBytes = 0,
    [property: Id(14)] long PoolFreeBytes = 0,
    [property: Id(15)] double SchedulingDelayMs = 0,
    [property: Id(16)] double DiskFloorMs = 0)
{
    /// <summary>
    /// One number to rank silos by: a MiB of pending delegated data, a queued copy, 10 ms of disk latency (the
    /// average write time, and again the floor: the lowest small write time lately, remembered while idle), 10 ms of
    /// scheduling delay and 25 % of CPU each count as one unit, so that a slow disk, a starved processor and a long
    /// queue weigh alike, while the few milliseconds of an ordinary fsync do not make the silo that happens to do the
    /// work look overloaded next to idle ones.
    /// </summary>
    public double Score => PendingDelegatedBytes / (1024.0 * 1024.0) + QueueDepth + DiskLatencyMs / 10.0
        + DiskFloorMs / 10.0 + SchedulingDelayMs / 10.0 + CpuPercent / 25.0;
}

/// <summary>Every silo's live usage and delegation counts.</summary>
[GenerateSerializer, Immutable, Alias("cloud.ClusterStatus")]
public sealed record ClusterStatus(
    [property: Id(0)] ImmutableArray<SiloLoad> Silos,
    [property: Id(1)] double MeanScore);

/// <summary>
/// The cluster's load table (key 0): each silo publishes its usage every 100-250 ms and gets the whole table back,
/// one round trip per silo per period.
/// </summary>
[Alias("cloud.ILoadTableGrain")]
public interface ILoadTableGrain : IGrainWithIntegerKey
{
    /// <summary>Records one silo's usage and returns every fresh entry.</summary>
    [Alias("Publish")]
    Task<ImmutableArray<SiloLoad>> PublishAsync(SiloLoad load);

    /// <summary>Every fresh entry with the mean score.</summary>
    [Alias("Status")]
    Task<ClusterStatus> GetStatusAsync();
}
