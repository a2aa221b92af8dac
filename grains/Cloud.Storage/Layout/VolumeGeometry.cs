using System.Numerics;

namespace Cloud.Storage.Layout;

/// <summary>
/// The shape of a volume: RAID level, number of member disks and chunk size (the contiguous
/// run of bytes placed on one member before moving to the next).
/// </summary>
/// <param name="Level">The redundancy scheme.</param>
/// <param name="MemberCount">Member disks, parity included: RAID-0 1..64, RAID-1 2..64, RAID-5 3..64, RAID-6
/// 4..64.</param>
/// <param name="ChunkSizeBytes">A power of two from <see cref="MinChunkSizeBytes"/> to
/// <see cref="MaxChunkSizeBytes"/>.</param>
public sealed record VolumeGeometry(RaidLevel Level, int MemberCount, int ChunkSizeBytes)
{
    /// <summary>The logical block: the I/O granule of every volume and the unit a checksum covers.</summary>
    public const int BlockSizeBytes = 4096;

    /// <summary>The smallest chunk: one logical block.</summary>
    public const int MinChunkSizeBytes = 4096;

    /// <summary>The largest chunk (1 MiB), so that a stripe buffer stays a modest pooled array.</summary>
    public const int MaxChunkSizeBytes = 1 << 20;

    /// <summary>The most members a volume may have; bounded by the member table in the superblock.</summary>
    public const int MaxMemberCount = 64;

    /// <summary>A sensible default chunk (64 KiB).</summary>
    public const int DefaultChunkSizeBytes = 64 * 1024;

    /// <summary>The fewest members <paramref name="level"/> allows.</summary>
    public static int MinMemberCount(RaidLevel level) => level switch
    {
        RaidLevel.Raid0 => 1,
        RaidLevel.Raid1 => 2,
        RaidLevel.Raid5 => 3,
        RaidLevel.Raid6 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(level), level, "allowed: Raid0, Raid1, Raid5, Raid6."),
    };

    /// <summary>Members holding parity in each stripe: 0 (RAID-0, RAID-1), 1 (RAID-5), 2 (RAID-6).</summary>
    public int ParityMemberCount => Level switch { RaidLevel.Raid5 => 1, RaidLevel.Raid6 => 2, _ => 0 };

    /// <summary>
    /// Distinct data chunks per stripe: the members for RAID-0, 1 for RAID-1 (every member is a copy), members minus
    /// parity otherwise.
    /// </summary>
    public int DataMemberCount => Level == RaidLevel.Raid1 ? 1 : MemberCount - ParityMemberCount;

    /// <summary>Bytes of volume data per stripe.</summary>
    public int StripeDataBytes => DataMemberCount * ChunkSizeBytes;

    /// <summary>Logical blocks per chunk.</summary>
    public int BlocksPerChunk => ChunkSizeBytes / BlockSizeBytes;

    /// <summary>How many members may fail with every block still readable: 0, n-1, 1 or 2.</summary>
    public int MaxFailedMembers => Level switch
    {
        RaidLevel.Raid0 => 0,
        RaidLevel.Raid1 => MemberCount - 1,
        RaidLevel.Raid5 => 1,
        _ => 2,
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad value and the allowed range.</summary>
    public VolumeGeometry Validate()
    {
        if (!Enum.IsDefined(Level))
            throw new ArgumentOutOfRangeException(
                nameof(Level), Level, "RAID level not supported; allowed: Raid0, Raid1, Raid5, Raid6.");
        var min = MinMemberCount(Level);
        if (MemberCount < min || MemberCount > MaxMemberCount)
            throw new ArgumentOutOfRangeException(nameof(MemberCount), MemberCount,
                $"{Level} needs {min}..{MaxMemberCount} members.");
        if (ChunkSizeBytes < MinChunkSizeBytes
            || ChunkSizeBytes > MaxChunkSizeBytes
            || !BitOperations.IsPow2(ChunkSizeBytes))
            throw new ArgumentOutOfRangeException(nameof(ChunkSizeBytes), ChunkSizeBytes,
                $"allowed: a power of two in {MinChunkSizeBytes}..{MaxChunkSizeBytes} bytes.");
        return this;
    }

    /// <inheritdoc />
    public override string ToString() => $"{Level} x{MemberCount} chunk {ChunkSizeBytes / 1024} KiB";
}
