using System.Collections.Immutable;

namespace Cloud.Grains.Abstractions;

/// <summary>The redundancy scheme of a volume. Mirrors the engine's RaidLevel so that clients need not reference the engine.</summary>
[GenerateSerializer, Alias("cloud.VolumeLevel")]
public enum VolumeLevel
{
    /// <summary>Striping, no redundancy.</summary>
    Raid0 = 0,
    /// <summary>Mirroring across every member.</summary>
    Raid1 = 1,
    /// <summary>Striping with one rotating parity member (XOR).</summary>
    Raid5 = 5,
    /// <summary>Striping with two rotating parity members (P + Q over GF(2^8)).</summary>
    Raid6 = 6,
}

/// <summary>What a caller asks for when creating a volume.</summary>
/// <param name="Name">Volume name: 1-64 characters of [A-Za-z0-9._-].</param>
/// <param name="SizeBytes">Requested logical size; member disks are sized so the volume holds at least this.</param>
/// <param name="Level">RAID level.</param>
/// <param name="DiskCount">Number of member disks.</param>
/// <param name="ChunkSizeBytes">Bytes per member per stripe (a power of two, 4 KiB-1 MiB).</param>
/// <param name="Durable">When true every write is acknowledged only after it is on disk.</param>
[GenerateSerializer, Immutable, Alias("cloud.VolumeSpec")]
public sealed record VolumeSpec(
    [property: Id(0)] string Name,
    [property: Id(1)] long SizeBytes,
    [property: Id(2)] VolumeLevel Level,
    [property: Id(3)] int DiskCount,
    [property: Id(4)] int ChunkSizeBytes,
    [property: Id(5)] bool Durable)
{
    /// <summary>The chunk size used when none is given.</summary>
    public const int DefaultChunkSizeBytes = 64 * 1024;

    /// <summary>
    /// The member disks, one descriptor per member in order: <c>file:PATH</c> or <c>pageblob:CONTAINER/BLOB</c>
    /// (a page blob in the silos' configured storage account). Empty (or default) = new files under the data directory.
    /// When given, there must be exactly <see cref="DiskCount"/> of them.
    /// </summary>
    [Id(6)]
    public ImmutableArray<string> Disks { get; init; } = [];
}

/// <summary>
/// A volume's definition as the catalog stores it. Each <see cref="DiskPaths"/> entry is where a member lives: a file path
/// (a plain path, as volumes always had) or a page blob as <c>pageblob:CONTAINER/BLOB</c>.
/// </summary>
[GenerateSerializer, Immutable, Alias("cloud.VolumeInfo")]
public sealed record VolumeInfo(
    [property: Id(0)] string Name,
    [property: Id(1)] Guid VolumeId,
    [property: Id(2)] long SizeBytes,
    [property: Id(3)] VolumeLevel Level,
    [property: Id(4)] int DiskCount,
    [property: Id(5)] int ChunkSizeBytes,
    [property: Id(6)] bool Durable,
    [property: Id(7)] ImmutableArray<string> DiskPaths,
    [property: Id(8)] DateTimeOffset CreatedUtc,
    ImmutableArray<string> MemberHosts = default)
{
    /// <summary>
    /// Each member's host (empty for a shared disk); empty for a volume recorded before members had hosts. Never a
    /// default array, so that serializers of catalogs written before the field existed read it as empty.
    /// </summary>
    [Id(9)]
    public ImmutableArray<string> MemberHosts { get; init; } = MemberHosts.IsDefault ? [] : MemberHosts;

    /// <summary>
    /// The host of member <paramref name="index"/> (the host whose silos reach it), or null for a disk every host
    /// reaches (a page blob, a shared block device) and for volumes recorded before hosts were (one machine).
    /// </summary>
    public string? MemberHost(int index) =>
        MemberHosts.IsDefaultOrEmpty || index >= MemberHosts.Length || MemberHosts[index].Length == 0 ? null : MemberHosts[index];
}

/// <summary>A volume's overall health.</summary>
[GenerateSerializer, Alias("cloud.VolumeHealthState")]
public enum VolumeHealthState
{
    /// <summary>Every member is active.</summary>
    Healthy,
    /// <summary>A member is failed or missing; data is served from redundancy.</summary>
    Degraded,
    /// <summary>A replacement member is being rebuilt.</summary>
    Rebuilding,
    /// <summary>More members are gone than the level tolerates.</summary>
    Failed,
    /// <summary>The volume could not be opened (see the status message).</summary>
    Unavailable,
}

/// <summary>The state of one member disk.</summary>
[GenerateSerializer, Alias("cloud.DiskState")]
public enum DiskState
{
    /// <summary>In service.</summary>
    Active,
    /// <summary>Failed by an I/O error or an operator.</summary>
    Failed,
    /// <summary>Being rebuilt from the other members.</summary>
    Rebuilding,
    /// <summary>Away: absent when the volume was assembled, or its host unreachable; rejoins when the host returns.</summary>
    Missing,
    /// <summary>Back from an absence and catching up the stripes written while it was away.</summary>
    Resyncing,
}

/// <summary>One member disk of a volume.</summary>
[GenerateSerializer, Immutable, Alias("cloud.DiskStatus")]
public sealed record DiskStatus(
    [property: Id(0)] int Index,
    [property: Id(1)] string Path,
    [property: Id(2)] DiskState State);

/// <summary>
/// Progress of a rebuild onto a replacement member, or of the catch-up of a member whose host returned (which passes
/// every stripe but writes only those written while it was away).
/// </summary>
[GenerateSerializer, Immutable, Alias("cloud.RebuildStatus")]
public sealed record RebuildStatus(
    [property: Id(0)] bool Running,
    [property: Id(1)] long StripesDone,
    [property: Id(2)] long StripesTotal,
    [property: Id(3)] string? Error,
    [property: Id(4)] long BytesMoved = 0)
{
    /// <summary>Completed fraction in [0, 1].</summary>
    public double Fraction => StripesTotal == 0 ? 1.0 : (double)StripesDone / StripesTotal;
}

/// <summary>What <c>volume show</c> reports.</summary>
[GenerateSerializer, Immutable, Alias("cloud.VolumeStatus")]
public sealed record VolumeStatus(
    [property: Id(0)] VolumeInfo Info,
    [property: Id(1)] VolumeHealthState Health,
    [property: Id(2)] long CapacityBytes,
    [property: Id(3)] long StripeCount,
    [property: Id(4)] ImmutableArray<DiskStatus> Disks,
    [property: Id(5)] RebuildStatus? Rebuild,
    [property: Id(6)] string? Message,
    [property: Id(7)] bool PartialParityLog = false);

/// <summary>The outcome of a scrub pass.</summary>
/// <param name="StripesChecked">Stripes read and checked.</param>
/// <param name="Mismatches">Stripes whose parity (or mirror copies) disagreed with the data.</param>
/// <param name="ChecksumErrors">Blocks whose checksum did not hold.</param>
/// <param name="Repaired">Stripes a repairing scrub put right.</param>
/// <param name="Unrecoverable">Stripes a repairing scrub found wrong and could not put right (too few good copies);
/// a scrub without repair counts none.</param>
[GenerateSerializer, Immutable, Alias("cloud.ScrubResult")]
public sealed record ScrubResult(
    [property: Id(0)] long StripesChecked,
    [property: Id(1)] long Mismatches,
    [property: Id(2)] long ChecksumErrors,
    [property: Id(3)] long Repaired,
    [property: Id(4)] long Unrecoverable = 0);
