using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.Storage.Format;

/// <summary>One entry of the superblock's member table.</summary>
/// <param name="MemberId">The identity of the disk that holds this position.</param>
/// <param name="State">Its state as of this superblock's generation.</param>
/// <param name="RebuildCursorStripes">For a rebuilding member: stripes already rebuilt.</param>
public readonly record struct MemberRecord(Guid MemberId, MemberState State, long RebuildCursorStripes);

/// <summary>
/// The per-member superblock (format version 1): everything needed to assemble the volume from its
/// disks alone. Layout in docs/FORMAT.md; all integers little-endian.
/// </summary>
public sealed record Superblock
{
    // Field offsets: kept in one place so the writer, the reader and FORMAT.md agree.
    private const int OffMagic = 0, OffVersion = 8, OffSize = 12, OffVolumeId = 16, OffMemberId = 32,
        OffMemberIndex = 48, OffMemberCount = 52, OffLevel = 56, OffChunk = 60, OffBlock = 64, OffMetaBytes = 68,
        OffDataOffset = 72, OffStride = 80, OffStripes = 88, OffCapacity = 96, OffGeneration = 104, OffCreated = 112,
        OffUpdated = 120, OffIntentOffset = 128, OffIntentSlots = 136, OffIntentSlotBytes = 140, OffRegionStripes = 144,
        OffNameLength = 152, OffName = 156, OffMembers = 416, MemberRecordBytes = 32,
        OffPartialParitySlotBytes = 2464, OffPartialParityOffset = 2472,
        OffChecksum = OnDiskFormat.SuperblockBytes - 8;

    /// <summary>The volume's identity.</summary>
    public required Guid VolumeId { get; init; }

    /// <summary>The volume's name.</summary>
    public required string VolumeName { get; init; }

    /// <summary>This disk's position in the volume.</summary>
    public required int MemberIndex { get; init; }

    /// <summary>Level, member count and chunk size.</summary>
    public required VolumeGeometry Geometry { get; init; }

    /// <summary>Stripes in the volume (the same on every member).</summary>
    public required long StripeCount { get; init; }

    /// <summary>Bumped on every superblock update; the highest valid one is authoritative.</summary>
    public required long Generation { get; init; }

    /// <summary>When the volume was created.</summary>
    public required DateTimeOffset Created { get; init; }

    /// <summary>When this superblock was written.</summary>
    public required DateTimeOffset Updated { get; init; }

    /// <summary>Every member's identity and state.</summary>
    public required IReadOnlyList<MemberRecord> Members { get; init; }

    /// <summary>
    /// Bytes of each writer slot's partial-parity ring, or 0 when the volume keeps no partial parity log (every volume
    /// made before it existed). The area follows the last stripe's chunk slot (docs/FORMAT.md).
    /// </summary>
    public long PartialParitySlotBytes { get; init; }

    /// <summary>Where the partial-parity area starts on every member: right after the last chunk slot.</summary>
    public long PartialParityOffsetBytes =>
        OnDiskFormat.DataOffsetBytes + StripeCount * OnDiskFormat.ChunkStrideBytes(Geometry.ChunkSizeBytes);

    /// <summary>The logical capacity: stripes times data bytes per stripe.</summary>
    public long CapacityBytes => StripeCount * Geometry.StripeDataBytes;

    /// <summary>Serialises into a 4096-byte buffer, checksum included.</summary>
    public void WriteTo(Span<byte> buffer)
    {
        if (buffer.Length < OnDiskFormat.SuperblockBytes)
            throw new ArgumentException($"needs {OnDiskFormat.SuperblockBytes} bytes.", nameof(buffer));
        Span<byte> b = buffer[..OnDiskFormat.SuperblockBytes];
        b.Clear();
        OnDiskFormat.Magic.CopyTo(b[OffMagic..]);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffVersion..], OnDiskFormat.FormatVersion);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffSize..], OnDiskFormat.SuperblockBytes);
        VolumeId.TryWriteBytes(b[OffVolumeId..]);
        Members[MemberIndex].MemberId.TryWriteBytes(b[OffMemberId..]);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffMemberIndex..], MemberIndex);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffMemberCount..], Geometry.MemberCount);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffLevel..], (int)Geometry.Level);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffChunk..], Geometry.ChunkSizeBytes);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffBlock..], VolumeGeometry.BlockSizeBytes);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffMetaBytes..], OnDiskFormat.MetadataBytes(Geometry.ChunkSizeBytes));
        BinaryPrimitives.WriteInt64LittleEndian(b[OffDataOffset..], OnDiskFormat.DataOffsetBytes);
        BinaryPrimitives.WriteInt64LittleEndian(b[OffStride..], OnDiskFormat.ChunkStrideBytes(Geometry.ChunkSizeBytes));
        BinaryPrimitives.WriteInt64LittleEndian(b[OffStripes..], StripeCount);
        BinaryPrimitives.WriteInt64LittleEndian(b[OffCapacity..], CapacityBytes);
        BinaryPrimitives.WriteInt64LittleEndian(b[OffGeneration..], Generation);
        BinaryPrimitives.WriteInt64LittleEndian(b[OffCreated..], Created.ToUnixTimeMilliseconds());
        BinaryPrimitives.WriteInt64LittleEndian(b[OffUpdated..], Updated.ToUnixTimeMilliseconds());
        BinaryPrimitives.WriteInt64LittleEndian(b[OffIntentOffset..], OnDiskFormat.IntentOffsetBytes);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffIntentSlots..], OnDiskFormat.IntentSlotCount);
        BinaryPrimitives.WriteInt32LittleEndian(b[OffIntentSlotBytes..], OnDiskFormat.IntentSlotBytes);
        BinaryPrimitives.WriteInt64LittleEndian(
            b[OffRegionStripes..], OnDiskFormat.IntentRegionStripes(StripeCount, Geometry.StripeDataBytes));
        if (PartialParitySlotBytes > 0)
        {
            BinaryPrimitives.WriteInt64LittleEndian(b[OffPartialParitySlotBytes..], PartialParitySlotBytes);
            BinaryPrimitives.WriteInt64LittleEndian(b[OffPartialParityOffset..], PartialParityOffsetBytes);
        }
        var nameBytes = Encoding.UTF8.GetBytes(VolumeName, b.Slice(OffName, VolumeDefinition.MaxNameBytes));
        BinaryPrimitives.WriteInt32LittleEndian(b[OffNameLength..], nameBytes);
        for (var i = 0; i < Members.Count; i++)
        {
            Span<byte> r = b.Slice(OffMembers + i * MemberRecordBytes, MemberRecordBytes);
            Members[i].MemberId.TryWriteBytes(r);
            r[16] = (byte)Members[i].State;
            BinaryPrimitives.WriteInt64LittleEndian(r[24..], Members[i].RebuildCursorStripes);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(b[OffChecksum..], XxHash3.HashToUInt64(b[..OffChecksum]));
    }

    /// <summary>Parses a superblock copy; returns null with a reason when it is absent or damaged.</summary>
    public static Superblock? TryRead(ReadOnlySpan<byte> b, out string? error)
    {
        error = EnvelopeError(b);
        if (error is not null) return null;
        var geometry = new VolumeGeometry((RaidLevel)BinaryPrimitives.ReadInt32LittleEndian(b[OffLevel..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[OffMemberCount..]), BinaryPrimitives.ReadInt32LittleEndian(
                b[OffChunk..]));
        try { geometry.Validate(); }
        catch (ArgumentException e) { error = $"invalid geometry: {e.Message}"; return null; }
        var index = BinaryPrimitives.ReadInt32LittleEndian(b[OffMemberIndex..]);
        var nameLength = BinaryPrimitives.ReadInt32LittleEndian(b[OffNameLength..]);
        var stripes = BinaryPrimitives.ReadInt64LittleEndian(b[OffStripes..]);
        var pplSlotBytes = BinaryPrimitives.ReadInt64LittleEndian(b[OffPartialParitySlotBytes..]);
        error = LayoutError(b, geometry, index, nameLength)
            ?? PartialParityError(geometry, stripes, pplSlotBytes, BinaryPrimitives.ReadInt64LittleEndian(
                b[OffPartialParityOffset..]));
        if (error is not null) return null;
        var members = ReadMembers(b, geometry.MemberCount);
        if (members[index].MemberId != new Guid(b.Slice(OffMemberId, 16)))
        {
            error = "member id differs from its own table entry";
            return null;
        }
        return new Superblock
        {
            PartialParitySlotBytes = pplSlotBytes,
            VolumeId = new Guid(b.Slice(OffVolumeId, 16)),
            VolumeName = Encoding.UTF8.GetString(b.Slice(OffName, nameLength)),
            MemberIndex = index,
            Geometry = geometry,
            StripeCount = stripes,
            Generation = BinaryPrimitives.ReadInt64LittleEndian(b[OffGeneration..]),
            Created = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64LittleEndian(b[OffCreated..])),
            Updated = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64LittleEndian(b[OffUpdated..])),
            Members = members,
        };
    }

    /// <summary>Why the copy is not a superblock this build reads (length, magic, checksum, version), or null.</summary>
    private static string? EnvelopeError(ReadOnlySpan<byte> b)
    {
        if (b.Length < OnDiskFormat.SuperblockBytes) return "short superblock";
        if (!b.Slice(OffMagic, OnDiskFormat.Magic.Length).SequenceEqual(OnDiskFormat.Magic))
            return "no superblock magic (not a Cloud volume member)";
        var stored = BinaryPrimitives.ReadUInt64LittleEndian(b[OffChecksum..]);
        if (stored != XxHash3.HashToUInt64(b[..OffChecksum])) return "superblock checksum mismatch (damaged)";
        var version = BinaryPrimitives.ReadInt32LittleEndian(b[OffVersion..]);
        return version != OnDiskFormat.FormatVersion
            ? $"format version {version}; this build reads version {OnDiskFormat.FormatVersion}"
            : null;
    }

    /// <summary>Why the member index, data offset, chunk stride or name length do not fit the geometry, or null.</summary>
    private static string? LayoutError(ReadOnlySpan<byte> b, VolumeGeometry geometry, int index, int nameLength)
    {
        if ((uint)index >= (uint)geometry.MemberCount)
            return $"member index {index} outside 0..{geometry.MemberCount - 1}";
        if (BinaryPrimitives.ReadInt64LittleEndian(b[OffDataOffset..]) != OnDiskFormat.DataOffsetBytes
            || BinaryPrimitives.ReadInt64LittleEndian(b[OffStride..]) != OnDiskFormat.ChunkStrideBytes(
                geometry.ChunkSizeBytes))
            return "data offset or chunk stride differ from format version 1";
        return (uint)nameLength > VolumeDefinition.MaxNameBytes ? $"name length {nameLength} out of range" : null;
    }

    /// <summary>Why the partial-parity area (none when its slots are 0 bytes) does not fit the geometry, or null.</summary>
    private static string? PartialParityError(VolumeGeometry geometry, long stripes, long pplSlotBytes, long pplOffset)
    {
        if (pplSlotBytes == 0) return null;
        var fits = pplSlotBytes >= OnDiskFormat.PartialParityMinSlotBytes(geometry.ChunkSizeBytes)
            && pplSlotBytes % OnDiskFormat.PartialParityHeaderBytes == 0 && pplSlotBytes <= 1L << 30
            && pplOffset == OnDiskFormat.DataOffsetBytes
                + stripes * OnDiskFormat.ChunkStrideBytes(geometry.ChunkSizeBytes);
        return fits ? null : $"partial-parity area of {pplSlotBytes} bytes per slot at {pplOffset} does not fit the geometry";
    }

    private static MemberRecord[] ReadMembers(ReadOnlySpan<byte> b, int count)
    {
        var members = new MemberRecord[count];
        for (var i = 0; i < members.Length; i++)
        {
            ReadOnlySpan<byte> r = b.Slice(OffMembers + i * MemberRecordBytes, MemberRecordBytes);
            members[i] = new MemberRecord(
                new Guid(r[..16]), (MemberState)r[16], BinaryPrimitives.ReadInt64LittleEndian(r[24..]));
        }
        return members;
    }
}
