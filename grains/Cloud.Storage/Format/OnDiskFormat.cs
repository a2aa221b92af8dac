using System.Buffers.Binary;
using System.IO.Hashing;
using Cloud.Storage.Layout;

namespace Cloud.Storage.Format;

/// <summary>
/// Offsets and sizes of the on-disk format, version 1 (docs/FORMAT.md is the normative description).
/// Every member disk holds, from offset 0: two superblock copies, the write-intent area (one
/// bitmap per writer slot), then from <see cref="DataOffsetBytes"/> one chunk slot per stripe: the
/// chunk's bytes followed by its metadata sector (a 16-byte entry per 4 KiB block).
/// </summary>
public static class OnDiskFormat
{
    /// <summary>The current format version.</summary>
    public const int FormatVersion = 1;

    /// <summary>The eight ASCII bytes every superblock starts with.</summary>
    public static ReadOnlySpan<byte> Magic => "CLDVOL01"u8;

    /// <summary>Size of one superblock copy.</summary>
    public const int SuperblockBytes = 4096;

    /// <summary>
    /// Superblock copies; generation g is written to copy g mod 2, so a torn update leaves the other intact.
    /// </summary>
    public const int SuperblockCopies = 2;

    /// <summary>Start of the write-intent area.</summary>
    public const long IntentOffsetBytes = SuperblockCopies * SuperblockBytes;

    /// <summary>
    /// Writer slots: processes that may have a volume open for writing at once, each with its own bitmap.
    /// </summary>
    public const int IntentSlotCount = 64;

    /// <summary>Bytes of one writer's bitmap: one page, written whole.</summary>
    public const int IntentSlotBytes = 4096;

    /// <summary>Regions one bitmap can track (one bit each).</summary>
    public const long IntentRegionsPerSlot = IntentSlotBytes * 8L;

    /// <summary>
    /// Start of the away area: one bitmap page per writer slot, in slot order, recording the regions that writer wrote
    /// while some member was away (<see cref="Volumes.MemberState.Missing"/> or not yet caught up), so that a member that
    /// returns resyncs only those. It follows the write-intent area.
    /// </summary>
    public const long AwayOffsetBytes = IntentOffsetBytes + (long)IntentSlotCount * IntentSlotBytes;

    /// <summary>Bytes of the intent and away areas together, from <see cref="IntentOffsetBytes"/>.</summary>
    public const int BitmapAreasBytes = 2 * IntentSlotCount * IntentSlotBytes;

    /// <summary>The least volume data one away bit covers (1 MiB, or one stripe if larger).</summary>
    public const long MinAwayRegionBytes = 1L << 20;

    /// <summary>
    /// Stripes per bit of the away record: the whole volume fits one page, and at least <see cref="MinAwayRegionBytes"/>
    /// of data. Finer than the intent bitmap's regions, because what a returning member resyncs is what the bits cover.
    /// </summary>
    public static long AwayRegionStripes(long stripeCount, int stripeDataBytes) =>
        Math.Max(
            Math.Max(1, (stripeCount + IntentRegionsPerSlot - 1) / IntentRegionsPerSlot),
            (MinAwayRegionBytes + stripeDataBytes - 1) / stripeDataBytes);

    /// <summary>Start of stripe 0's chunk slot: 1 MiB, past the intent area and aligned for any device.</summary>
    public const long DataOffsetBytes = 1 << 20;

    /// <summary>
    /// Bytes of one block's metadata entry: write timestamp (int64) then XxHash3-64 of the block (uint64),
    /// little-endian.
    /// </summary>
    public const int MetadataEntryBytes = 16;

    /// <summary>
    /// Metadata is padded to this unit so that chunk slots stay 4 KiB-aligned and each is written whole.
    /// </summary>
    public const int MetadataAlignmentBytes = 4096;

    /// <summary>The metadata sector size following each chunk: 16 bytes per block rounded up to 4 KiB.</summary>
    public static int MetadataBytes(int chunkSizeBytes)
    {
        var entries = chunkSizeBytes / VolumeGeometry.BlockSizeBytes * MetadataEntryBytes;
        return (entries + MetadataAlignmentBytes - 1) / MetadataAlignmentBytes * MetadataAlignmentBytes;
    }

    /// <summary>Distance between chunk slots on a member.</summary>
    public static long ChunkStrideBytes(int chunkSizeBytes) => chunkSizeBytes + MetadataBytes(chunkSizeBytes);

    /// <summary>
    /// Bytes of one writer slot's partial-parity ring on a member, for a volume that keeps the partial parity log: room
    /// for four entries of a whole chunk (a 4 KiB header, the chunk's rows and their guards) and at least 256 KiB, so
    /// that a writer's writes in flight on one parity member rarely wait for room. See docs/WRITE-HOLE.md.
    /// </summary>
    public static long PartialParitySlotBytes(int chunkSizeBytes) =>
        Math.Max(256L << 10, 4L * (chunkSizeBytes + 2 * PartialParityHeaderBytes));

    /// <summary>
    /// The least ring that holds one entry of a whole chunk: header, rows, and a 24-byte guard per row padded to 4 KiB.
    /// </summary>
    public static long PartialParityMinSlotBytes(int chunkSizeBytes) =>
        PartialParityEntryBytes(chunkSizeBytes / VolumeGeometry.BlockSizeBytes);

    /// <summary>Bytes of a 24-byte guard per row of a partial-parity entry.</summary>
    public const int PartialParityGuardBytes = 24;

    /// <summary>Bytes of an entry of <paramref name="rows"/> rows: header, rows, and a guard per row padded to 4 KiB.</summary>
    public static int PartialParityEntryBytes(int rows) =>
        PartialParityHeaderBytes + rows * VolumeGeometry.BlockSizeBytes
        + (rows * PartialParityGuardBytes + PartialParityHeaderBytes - 1) / PartialParityHeaderBytes * PartialParityHeaderBytes;

    /// <summary>Bytes of a partial-parity entry's header; its rows follow it.</summary>
    public const int PartialParityHeaderBytes = 4096;

    /// <summary>The eight ASCII bytes every partial-parity entry starts with.</summary>
    public static ReadOnlySpan<byte> PartialParityMagic => "CLDPPL01"u8;

    /// <summary>
    /// Bytes the partial-parity area takes at the end of every member: one ring per writer slot (0 when the volume keeps
    /// no partial parity log).
    /// </summary>
    public static long PartialParityAreaBytes(long slotBytes) => IntentSlotCount * slotBytes;

    /// <summary>Stripes that fit on a member of <paramref name="memberCapacityBytes"/>.</summary>
    public static long StripesThatFit(long memberCapacityBytes, int chunkSizeBytes) =>
        Math.Max(0, (memberCapacityBytes - DataOffsetBytes) / ChunkStrideBytes(chunkSizeBytes));

    /// <summary>The least volume data one intent bit covers (16 MiB, or one stripe if larger).</summary>
    public const long MinIntentRegionBytes = 16L << 20;

    /// <summary>
    /// Stripes per bit of the intent bitmap: enough that the whole volume fits one page, and at least
    /// <see cref="MinIntentRegionBytes"/> of data, so a random-write workload does not pay a bitmap
    /// flush for every stripe it touches first (md's bitmap chunk makes the same trade).
    /// </summary>
    public static long IntentRegionStripes(long stripeCount, int stripeDataBytes) =>
        Math.Max(
            Math.Max(1, (stripeCount + IntentRegionsPerSlot - 1) / IntentRegionsPerSlot),
            (MinIntentRegionBytes + stripeDataBytes - 1) / stripeDataBytes);

    /// <summary>The checksum stored for a block.</summary>
    public static ulong BlockChecksum(ReadOnlySpan<byte> block) => XxHash3.HashToUInt64(block);

    /// <summary>Reads entry <paramref name="block"/> of a metadata sector.</summary>
    public static (long Timestamp, ulong Checksum) ReadEntry(ReadOnlySpan<byte> metadata, int block)
    {
        ReadOnlySpan<byte> e = metadata.Slice(block * MetadataEntryBytes, MetadataEntryBytes);
        return (BinaryPrimitives.ReadInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]));
    }

    /// <summary>Writes entry <paramref name="block"/> of a metadata sector.</summary>
    public static void WriteEntry(Span<byte> metadata, int block, long timestamp, ulong checksum)
    {
        Span<byte> e = metadata.Slice(block * MetadataEntryBytes, MetadataEntryBytes);
        BinaryPrimitives.WriteInt64LittleEndian(e, timestamp);
        BinaryPrimitives.WriteUInt64LittleEndian(e[8..], checksum);
    }

    /// <summary>
    /// True when <paramref name="block"/> matches its entry, or the entry is all zero (never written
    /// through the volume, so there is nothing to check against).
    /// </summary>
    public static bool Verify(ReadOnlySpan<byte> block, ReadOnlySpan<byte> metadata, int blockIndex)
    {
        (var ts, var sum) = ReadEntry(metadata, blockIndex);
        return (ts == 0 && sum == 0) || BlockChecksum(block) == sum;
    }
}
