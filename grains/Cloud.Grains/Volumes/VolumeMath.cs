using System.Text.RegularExpressions;
using Cloud.Grains.Abstractions;

namespace Cloud.Grains;

/// <summary>
/// Geometry arithmetic the grains share with the engine (offset → stripe → partition), and spec validation.
/// </summary>
public static partial class VolumeMath
{
    /// <summary>
    /// The logical block: the engine's unit, each with its own checksum and write timestamp on disk. Whole aligned
    /// blocks are written without reading first.
    /// </summary>
    public const int BlockSizeBytes = 4096;

    /// <summary>
    /// The smallest unit clients address: reads, writes and trims start and end on multiples of it. A range that does
    /// not cover whole blocks reads the enclosing blocks, and a write of one rewrites them (see
    /// <c>FirstServers/SectorWrites</c>).
    /// </summary>
    public const int SectorSizeBytes = 512;

    /// <summary>Most member disks a volume may have.</summary>
    public const int MaxDiskCount = 32;

    /// <summary>Smallest chunk.</summary>
    public const int MinChunkSizeBytes = 4096;

    /// <summary>Largest chunk.</summary>
    public const int MaxChunkSizeBytes = 1 << 20;

    /// <summary>Largest volume.</summary>
    public const long MaxVolumeSizeBytes = 64L << 40;

    /// <summary>Longest volume name.</summary>
    public const int MaxNameLength = 64;

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    private static partial Regex NamePattern();

    /// <summary>Members that carry data in each stripe.</summary>
    public static int DataMembers(VolumeLevel level, int diskCount) => level switch
    {
        VolumeLevel.Raid0 => diskCount,
        VolumeLevel.Raid1 => 1,
        VolumeLevel.Raid5 => diskCount - 1,
        VolumeLevel.Raid6 => diskCount - 2,
        _ => throw new CloudRequestException($"level {level} is not one of raid0, raid1, raid5, raid6"),
    };

    /// <summary>Least member count per level.</summary>
    public static int MinDisks(VolumeLevel level) => level switch
    {
        VolumeLevel.Raid0 => 1,
        VolumeLevel.Raid1 => 2,
        VolumeLevel.Raid5 => 3,
        VolumeLevel.Raid6 => 4,
        _ => throw new CloudRequestException($"level {level} is not one of raid0, raid1, raid5, raid6"),
    };

    /// <summary>Data bytes per stripe.</summary>
    public static long StripeDataBytes(VolumeLevel level, int diskCount, int chunkSizeBytes)
        => (long)DataMembers(level, diskCount) * chunkSizeBytes;

    /// <summary>Data bytes per stripe of a volume.</summary>
    public static long StripeDataBytes(VolumeInfo v) => StripeDataBytes(v.Level, v.DiskCount, v.ChunkSizeBytes);

    /// <summary>The volume's size rounded up to whole stripes.</summary>
    public static long RoundUpToStripes(long sizeBytes, VolumeInfo v)
    {
        var stripe = StripeDataBytes(v);
        return (sizeBytes + stripe - 1) / stripe * stripe;
    }

    /// <summary>Stripes per partition-lock grain.</summary>
    public static long StripesPerPartition(VolumeInfo v, long partitionTargetBytes)
        => Math.Max(1, partitionTargetBytes / StripeDataBytes(v));

    /// <summary>The partition-lock grain key of a partition.</summary>
    public static string PartitionKey(VolumeInfo v, long partition) => $"{v.VolumeId:N}/{partition}";

    /// <summary>
    /// Checks a spec, throwing <see cref="CloudRequestException"/> whose <see cref="CloudRequestException.Field"/> is
    /// the
    /// bad property of <see cref="VolumeSpec"/> and whose message starts with that property's name and value and says
    /// what is allowed.
    /// </summary>
    public static void Validate(VolumeSpec spec)
    {
        if (string.IsNullOrEmpty(spec.Name) || spec.Name.Length > MaxNameLength || !NamePattern().IsMatch(spec.Name))
            throw new CloudRequestException(
                nameof(VolumeSpec.Name),
                $"{nameof(VolumeSpec.Name)} '{spec.Name}' is not allowed; use 1-{MaxNameLength} characters of A-Z a-z 0-9 . _ - starting with a letter or digit");
        if (!Enum.IsDefined(spec.Level))
            throw new CloudRequestException(
                nameof(VolumeSpec.Level),
                $"{nameof(VolumeSpec.Level)} {(int)spec.Level} is not one of raid0, raid1, raid5, raid6");
        var min = MinDisks(spec.Level);
        if (spec.DiskCount < min || spec.DiskCount > MaxDiskCount)
            throw new CloudRequestException(
                nameof(VolumeSpec.DiskCount),
                $"{nameof(VolumeSpec.DiskCount)} {spec.DiskCount} is not allowed for {spec.Level.ToString().ToLowerInvariant()}; use {min}-{MaxDiskCount}");
        if (spec.ChunkSizeBytes < MinChunkSizeBytes
            || spec.ChunkSizeBytes > MaxChunkSizeBytes
            || (spec.ChunkSizeBytes & (spec.ChunkSizeBytes - 1)) != 0)
            throw new CloudRequestException(
                nameof(VolumeSpec.ChunkSizeBytes),
                $"{nameof(VolumeSpec.ChunkSizeBytes)} {spec.ChunkSizeBytes} is not a power of two between {MinChunkSizeBytes} and {MaxChunkSizeBytes}");
        if (spec.SizeBytes <= 0 || spec.SizeBytes > MaxVolumeSizeBytes || spec.SizeBytes % BlockSizeBytes != 0)
            throw new CloudRequestException(
                nameof(VolumeSpec.SizeBytes),
                $"{nameof(VolumeSpec.SizeBytes)} {spec.SizeBytes} is not a multiple of {BlockSizeBytes} between {BlockSizeBytes} and {MaxVolumeSizeBytes}");
    }

    /// <summary>
    /// Checks a block-aligned I/O range against a volume (the engine-facing paths: RAID worker, trim of whole
    /// blocks), throwing <see cref="CloudRequestException"/> naming the bad value.
    /// </summary>
    public static void CheckRange(VolumeInfo v, long offsetBytes, long lengthBytes) =>
        CheckRange(v, offsetBytes, lengthBytes, BlockSizeBytes);

    /// <summary>
    /// Checks a client's I/O range against a volume: offset and length multiples of <see cref="SectorSizeBytes"/>,
    /// inside the volume. Throws <see cref="CloudRequestException"/> naming the bad value and what is allowed.
    /// </summary>
    public static void CheckSectorRange(VolumeInfo v, long offsetBytes, long lengthBytes) =>
        CheckRange(v, offsetBytes, lengthBytes, SectorSizeBytes);

    /// <summary>True when the range starts and ends on block boundaries (no read-modify-write needed).</summary>
    public static bool IsBlockAligned(long offsetBytes, long lengthBytes) =>
        offsetBytes % BlockSizeBytes == 0 && lengthBytes % BlockSizeBytes == 0;

    private static void CheckRange(VolumeInfo v, long offsetBytes, long lengthBytes, int unitBytes)
    {
        if (offsetBytes < 0 || offsetBytes % unitBytes != 0)
            throw new CloudRequestException(
                $"offset {offsetBytes} is not allowed; use a multiple of {unitBytes} from 0");
        if (lengthBytes <= 0 || lengthBytes % unitBytes != 0)
            throw new CloudRequestException(
                $"length {lengthBytes} is not allowed; use a positive multiple of {unitBytes}");
        if (offsetBytes + lengthBytes > v.SizeBytes)
            throw new CloudRequestException(
                $"range {offsetBytes}+{lengthBytes} ends past the end of volume '{v.Name}' ({v.SizeBytes} bytes)");
    }
}
