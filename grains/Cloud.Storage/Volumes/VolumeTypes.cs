using Cloud.Storage.Layout;

namespace Cloud.Storage.Volumes;

/// <summary>A member's role in the volume. Stored in the superblock's member table as a byte.</summary>
public enum MemberState : byte
{
    /// <summary>In service and in sync.</summary>
    Active = 0,

    /// <summary>Taken out of service after an I/O error or by an operator; must be replaced.</summary>
    Failed = 1,

    /// <summary>A replacement being rebuilt; valid below its rebuild cursor.</summary>
    Rebuilding = 2,

    /// <summary>
    /// Away: not present at assembly (no device given), or its host could not be reached
    /// (<see cref="Devices.MemberUnreachableException"/>). Writes meanwhile go to the others and are recorded in the
    /// away area, so that the disk, when it returns, catches up only those stripes.
    /// </summary>
    Missing = 3,

    /// <summary>
    /// An away member that returned, under a new identity, catching up: valid below its cursor; above it, valid except
    /// on the stripes the away record marks, which the catch-up resyncs as its cursor passes them.
    /// </summary>
    Resyncing = 4,
}

/// <summary>The volume's redundancy as a whole.</summary>
public enum VolumeHealth
{
    /// <summary>Every member active.</summary>
    Healthy,

    /// <summary>Members failed or missing, within what the level tolerates; all data readable.</summary>
    Degraded,

    /// <summary>A replacement is being rebuilt.</summary>
    Rebuilding,

    /// <summary>More members lost than the level tolerates; I/O fails.</summary>
    Failed,
}

/// <summary>What a volume knows about one member.</summary>
/// <param name="Index">Position in the volume, 0..MemberCount-1.</param>
/// <param name="DeviceName">The device's name, or null when missing.</param>
/// <param name="MemberId">The identity written in the member's superblock.</param>
/// <param name="State">Its state.</param>
/// <param name="RebuildCursorStripes">For a rebuilding member, the stripes already rebuilt.</param>
/// <param name="Reason">Why it failed, when it did.</param>
public sealed record MemberInfo(
    int Index,
    string? DeviceName,
    Guid MemberId,
    MemberState State,
    long RebuildCursorStripes,
    string? Reason);

/// <summary>What defines a volume: its name, identity and geometry.</summary>
/// <param name="Name">Up to 255 UTF-8 bytes, not empty (the NBD export name).</param>
/// <param name="VolumeId">Identity written to every member; a disk with another id is refused as foreign.</param>
/// <param name="Geometry">Level, member count and chunk size.</param>
public sealed record VolumeDefinition(string Name, Guid VolumeId, VolumeGeometry Geometry)
{
    /// <summary>The longest name the superblock holds, in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 255;

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad field and what is allowed.</summary>
    public VolumeDefinition Validate()
    {
        if (string.IsNullOrEmpty(Name))
            throw new ArgumentException("volume name must not be empty; allowed: 1..255 UTF-8 bytes.", nameof(Name));
        var bytes = System.Text.Encoding.UTF8.GetByteCount(Name);
        if (bytes > MaxNameBytes)
            throw new ArgumentOutOfRangeException(
                nameof(Name), Name, $"volume name is {bytes} UTF-8 bytes; allowed: 1..{MaxNameBytes}.");
        if (VolumeId == Guid.Empty)
            throw new ArgumentException("volume id must not be Guid.Empty.", nameof(VolumeId));
        ArgumentNullException.ThrowIfNull(Geometry);
        Geometry.Validate();
        return this;
    }
}

/// <summary>Progress of a rebuild.</summary>
/// <param name="MemberIndex">The member being rebuilt.</param>
/// <param name="StripesDone">Stripes rebuilt so far.</param>
/// <param name="StripesTotal">Stripes in the volume.</param>
/// <param name="BytesMoved">Bytes written to the member so far by this opener (chunks and their metadata sectors); a
/// catch-up of a returning member writes only the stripes recorded while it was away.</param>
public readonly record struct RebuildProgress(int MemberIndex, long StripesDone, long StripesTotal, long BytesMoved = 0)
{
    /// <summary>Done fraction, 0..1.</summary>
    public double Fraction => StripesTotal == 0 ? 1 : (double)StripesDone / StripesTotal;
}

/// <summary>Progress of a scrub.</summary>
public readonly record struct ScrubProgress(
    long StripesChecked,
    long StripesTotal,
    long ParityMismatches,
    long ChecksumErrors);

/// <summary>What a scrub found.</summary>
/// <param name="StripesChecked">Stripes read.</param>
/// <param name="ParityMismatches">Stripes whose parity (or mirror copies) disagreed with their data although every
/// block's checksum was good.</param>
/// <param name="ChecksumErrors">Blocks (data or parity) whose checksum did not match.</param>
/// <param name="Repaired">Stripes rewritten to fix what was found (only when repair was asked).</param>
/// <param name="Unrecoverable">Stripes with more damage than the redundancy could fix.</param>
public sealed record ScrubReport(
    long StripesChecked,
    long ParityMismatches,
    long ChecksumErrors,
    long Repaired,
    long Unrecoverable);

/// <summary>Data could not be read or written with the redundancy left: too many members failed or corrupt.</summary>
public sealed class VolumeDataLossException : IOException
{
    public VolumeDataLossException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>Options of a <see cref="RaidVolume"/>.</summary>
public sealed class RaidVolumeOptions
{
    /// <summary>Default <see cref="WriterSlot"/>.</summary>
    public const int DefaultWriterSlot = 0;

    /// <summary>Default <see cref="MaxIoSizeBytes"/> (8 MiB; raised to one stripe when a stripe is larger).</summary>
    public const int DefaultMaxIoSizeBytes = 8 << 20;

    /// <summary>Default <see cref="MaxStripesInFlightPerRequest"/>.</summary>
    public const int DefaultMaxStripesInFlightPerRequest = 4;

    /// <summary>Default <see cref="RebuildCheckpointStripes"/>.</summary>
    public const int DefaultRebuildCheckpointStripes = 1024;

    /// <summary>
    /// This opener's write-intent slot, 0..63. Every process that has the volume open for writing at
    /// the same time must use a different slot (the cluster assigns them), so that no bitmap sector is
    /// shared between processes.
    /// </summary>
    public int WriterSlot { get; set; } = DefaultWriterSlot;

    /// <summary>
    /// When assembling, resync the stripes marked in every writer slot, not only this opener's. Right
    /// when no other process has the volume open (a single-process service, or offline repair).
    /// </summary>
    public bool RecoverAllWriterSlots { get; set; } = true;

    /// <summary>
    /// When assembling, resync the stripes the write-intent bitmap marks (this opener's slot, or every slot with
    /// <see cref="RecoverAllWriterSlots"/>). Turn it off when other processes write the same members at the same time:
    /// a resync rewrites parity from the data it reads, so it must hold their cluster-wide locks on those stripes, which
    /// the engine cannot take; the host then calls <see cref="RaidVolume.RecoverWriterSlotAsync"/> under those locks
    /// (<see cref="RaidVolume.MarkedStripesOfSlotAsync"/> says which).
    /// </summary>
    public bool RecoverOnAssemble { get; set; } = true;

    /// <summary>
    /// Keep the write-intent bitmap (closes the write hole). Turning it off is for measurements only.
    /// </summary>
    public bool WriteIntentLog { get; set; } = true;

    /// <summary>The largest single request, 1 MiB..1 GiB.</summary>
    public int MaxIoSizeBytes { get; set; } = DefaultMaxIoSizeBytes;

    /// <summary>How many stripes of one request are worked on at once, 1..64.</summary>
    public int MaxStripesInFlightPerRequest { get; set; } = DefaultMaxStripesInFlightPerRequest;

    /// <summary>A rebuild records its progress in the superblocks every this many stripes, 1..2^20.</summary>
    public int RebuildCheckpointStripes { get; set; } = DefaultRebuildCheckpointStripes;

    /// <summary>
    /// A read that meets a corrupt block writes the reconstructed block back (default). Turn it off
    /// when other processes may be writing the same stripe without this reader holding a lock that
    /// excludes them; the reader still gets correct data, and scrub repairs the medium.
    /// </summary>
    public bool RepairOnRead { get; set; } = true;

    /// <summary>
    /// Serialises superblock updates of the volume across openers (default:
    /// <see cref="LocalSuperblockCoordinator.Shared"/>,
    /// which covers one process). In a cluster, supply one that excludes every silo.
    /// </summary>
    public ISuperblockCoordinator SuperblockCoordinator { get; set; } = LocalSuperblockCoordinator.Shared;

    /// <summary>Default <see cref="MemberRefreshInterval"/>.</summary>
    public static readonly TimeSpan DefaultMemberRefreshInterval = TimeSpan.FromSeconds(2);

    /// <summary>
    /// <see cref="RaidVolume.FlushAsync"/> re-reads the superblocks when the last look is older than this, so
    /// that member failures and rebuilds by other openers are noticed; <see cref="Timeout.InfiniteTimeSpan"/>
    /// turns it off (a member error or <see cref="RaidVolume.RefreshMembersAsync"/> still re-read them).
    /// Allowed: zero or more, or infinite.
    /// </summary>
    public TimeSpan MemberRefreshInterval { get; set; } = DefaultMemberRefreshInterval;

    /// <summary>
    /// On create, write zeroes over every chunk slot (needed when members may hold old data; new files and blobs read
    /// as zeroes already).
    /// </summary>
    public bool ZeroMembersOnCreate { get; set; }

    /// <summary>
    /// On create (RAID-5/6 only): keep a partial parity log, so that a writer that dies together with members of the
    /// stripe it was writing (a host that is both, in a cluster of hosts) cannot take acknowledged data of that stripe
    /// with it. Before each write that leaves some data rows of a stripe as they are, the parity of those rows is
    /// written to the stripe's parity members, in this writer slot's ring; reconstruction reads it back (docs/WRITE-HOLE.md).
    /// Costs a ring per writer slot at the end of every member and one more round trip per partial-stripe write.
    /// Opening an existing volume follows its superblock, not this option.
    /// </summary>
    public bool PartialParityLog { get; set; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the bad option and its range.</summary>
    public RaidVolumeOptions Validate()
    {
        if (WriterSlot is < 0 or >= Format.OnDiskFormat.IntentSlotCount)
            throw new ArgumentOutOfRangeException(
                nameof(WriterSlot), WriterSlot, $"allowed: 0..{Format.OnDiskFormat.IntentSlotCount - 1}.");
        if (MaxIoSizeBytes is < (1 << 20) or > (1 << 30))
            throw new ArgumentOutOfRangeException(nameof(MaxIoSizeBytes), MaxIoSizeBytes, "allowed: 1 MiB..1 GiB.");
        if (MaxStripesInFlightPerRequest is < 1 or > 64)
            throw new ArgumentOutOfRangeException(
                nameof(MaxStripesInFlightPerRequest), MaxStripesInFlightPerRequest, "allowed: 1..64.");
        ArgumentNullException.ThrowIfNull(SuperblockCoordinator, nameof(SuperblockCoordinator));
        if (MemberRefreshInterval < TimeSpan.Zero && MemberRefreshInterval != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(
                nameof(MemberRefreshInterval),
                MemberRefreshInterval,
                "allowed: zero or more, or Timeout.InfiniteTimeSpan.");
        if (RebuildCheckpointStripes is < 1 or > (1 << 20))
            throw new ArgumentOutOfRangeException(
                nameof(RebuildCheckpointStripes), RebuildCheckpointStripes, "allowed: 1..1048576.");
        return this;
    }
}
