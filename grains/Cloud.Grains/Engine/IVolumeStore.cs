using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Storage.Devices;

namespace Cloud.Grains.Engine;

/// <summary>
/// The slice of the storage engine's <c>RaidVolume</c> that the grains use, so that the grains are written once
/// against the engine's contract (the XML docs of <c>RaidVolume</c> and <c>IBlockVolume</c> in grains/Cloud.Storage,
/// placed among the other pieces by docs/ARCHITECTURE.md) and the adapter is the only place that names engine types.
/// </summary>
public interface IVolumeStore : IAsyncDisposable
{
    /// <summary>Logical capacity in bytes.</summary>
    long CapacityBytes { get; }

    /// <summary>Data bytes per stripe (the unit a partition lock covers).</summary>
    long StripeDataBytes { get; }

    /// <summary>Number of stripes.</summary>
    long StripeCount { get; }

    /// <summary>The least size of a member disk, partial-parity area included: what a replacement is made at.</summary>
    long MemberBytesNeeded { get; }

    /// <summary>The volume keeps a partial parity log (docs/WRITE-HOLE.md).</summary>
    bool KeepsPartialParityLog => false;

    /// <summary>The logical block size (4096).</summary>
    int BlockSizeBytes { get; }

    /// <summary>Health as the engine sees it.</summary>
    VolumeHealthState Health { get; }

    /// <summary>Member disks and their states.</summary>
    ImmutableArray<DiskStatus> Members { get; }

    /// <summary>The stripes a byte range touches.</summary>
    (long First, long Last) StripeRange(long offsetBytes, long lengthBytes);

    /// <summary>Reads (degraded when a member is gone).</summary>
    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>The versioned write: stores <paramref name="writeTimestamp"/> in each block's metadata.</summary>
    ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        long writeTimestamp,
        bool forceUnitAccess,
        CancellationToken cancellationToken);

    /// <summary>
    /// Each block's stored write timestamp (0 = never written, or unknown: a block on a missing member has none of its
    /// own, and its row's parity timestamp, which may come from another block, is not taken for it).
    /// </summary>
    ValueTask ReadBlockTimestampsAsync(long offsetBytes, Memory<long> timestamps, CancellationToken cancellationToken);

    /// <summary>Makes every completed write durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Flushes every member, including completed writes of other openers (a silo that died): see
    /// <see cref="Cloud.Storage.Volumes.RaidVolume.FlushEveryMemberAsync"/>.
    /// </summary>
    ValueTask FlushEveryMemberAsync(CancellationToken cancellationToken);

    /// <summary>Discards a range.</summary>
    ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken);

    /// <summary>Fails a member.</summary>
    ValueTask FailMemberAsync(int memberIndex, string reason);

    /// <summary>
    /// Puts a fresh disk in place of a member: <paramref name="device"/> when the caller made it (another host's file,
    /// made by that host's disk service), else a disk created at <paramref name="path"/> here.
    /// </summary>
    ValueTask ReplaceMemberAsync(int memberIndex, string path, IBlockDevice? device, CancellationToken cancellationToken);

    /// <summary>
    /// The first stripe a rebuild still has to rebuild (the lowest cursor of a rebuilding member), or
    /// <see cref="StripeCount"/> when no member is rebuilding.
    /// </summary>
    long RebuildCursorStripes { get; }

    /// <summary>Bytes this engine has written to rebuilding and catching-up members since it was opened.</summary>
    long RebuildBytesMoved { get; }

    /// <summary>
    /// Rebuilds replaced members' stripes up to <paramref name="endStripe"/> (exclusive) and records the cursor in the
    /// superblocks, which every other silo re-reads before this returns; the members become active at the last
    /// stripe; a member catching up after its host returned is written only on the stripes recorded while it was away.
    /// Progress as (stripes done, stripes total, <see cref="RebuildBytesMoved"/>). The caller holds the partition locks of the stripes from <see cref="RebuildCursorStripes"/> up to
    /// <paramref name="endStripe"/> exclusively until this returns: other silos' engines write a new member only
    /// below the cursor they have read, so a stripe must neither change while it is rebuilt nor be written before its
    /// cursor is recorded.
    /// </summary>
    ValueTask RebuildStripesAsync(
        long endStripe, IProgress<(long Done, long Total, long BytesMoved)>? progress, CancellationToken cancellationToken);

    /// <summary>
    /// Checks (and repairs) parity and checksums of stripes <paramref name="firstStripe"/> to
    /// <paramref name="lastStripe"/> (inclusive). The engine excludes only this silo's own writers; the caller holds
    /// the partition locks of these stripes, shared to check and exclusive to repair.
    /// </summary>
    ValueTask<ScrubResult> ScrubStripesAsync(
        long firstStripe, long lastStripe, bool repair, CancellationToken cancellationToken);

    /// <summary>The volume's id, as its superblocks record it.</summary>
    Guid VolumeId { get; }

    /// <summary>
    /// Re-reads the superblocks and adopts member changes another silo recorded (fail, replace, rebuild).
    /// </summary>
    ValueTask RefreshMembersAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Resyncs the stripes a writer through intent slot <paramref name="writerSlot"/> (a dead silo, or this silo's
    /// earlier engine) may have left mid-update; the caller holds those stripes' locks. Returns the stripes resynced.
    /// </summary>
    ValueTask<long> RecoverWriterSlotAsync(int writerSlot, CancellationToken cancellationToken);

    /// <summary>
    /// The intent slots whose marks this engine found at its open and left unresynced, for the host to recover under
    /// the stripes' partition locks (<see cref="RecoverWriterSlotAsync"/>): its own slot, or every slot when it opened
    /// alone in the cluster. A resync without those locks would rewrite parity under another silo's write.
    /// </summary>
    IReadOnlyList<int> WriterSlotsToRecover { get; }

    /// <summary>
    /// The stripe ranges (end exclusive) intent slot <paramref name="writerSlot"/> marks, which
    /// <see cref="RecoverWriterSlotAsync"/> would resync; changes nothing.
    /// </summary>
    ValueTask<IReadOnlyList<(long First, long End)>> MarkedStripesOfSlotAsync(
        int writerSlot,
        CancellationToken cancellationToken);

    /// <summary>
    /// Resyncs stripes [<paramref name="firstStripe"/>, <paramref name="endStripe"/>), part of a writer slot's marks;
    /// the caller holds their locks. Returns the stripes resynced.
    /// </summary>
    ValueTask<long> ResyncStripesAsync(long firstStripe, long endStripe, CancellationToken cancellationToken);

    /// <summary>
    /// Clears intent slot <paramref name="writerSlot"/>'s marks once every stripe they mark was resynced
    /// (<see cref="ResyncStripesAsync"/>).
    /// </summary>
    ValueTask ClearWriterSlotAsync(int writerSlot, CancellationToken cancellationToken);

    /// <summary>
    /// A writer died: the next reconstruction of a stripe with members missing reads every writer's partial-parity ring
    /// again, since the dead writer's last entries may be newer than this engine's reading (docs/WRITE-HOLE.md).
    /// </summary>
    void ForgetPartialParityIndex() { }
}

/// <summary>Creates (formats) and opens (assembles) volume stores from their member disk files.</summary>
public interface IVolumeStoreFactory
{
    /// <summary>Creates the member files at <see cref="VolumeInfo.DiskPaths"/> and formats them.</summary>
    ValueTask<IVolumeStore> CreateAsync(VolumeInfo volume, long memberSizeBytes, CancellationToken cancellationToken);

    /// <summary>Assembles the volume from its member files' superblocks.</summary>
    ValueTask<IVolumeStore> OpenAsync(VolumeInfo volume, CancellationToken cancellationToken);

    /// <summary>
    /// The member size needed for a volume of <see cref="VolumeSpec.SizeBytes"/> logical bytes, with room for the
    /// partial parity log when a volume so made keeps one: RAID-5/6, <paramref name="spread"/> over the hosts' pools, and
    /// <see cref="Hosting.CloudOptions.PartialParityLog"/> on.
    /// </summary>
    long MemberSizeBytes(VolumeSpec spec, bool spread);
}
