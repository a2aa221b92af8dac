namespace Cloud.Storage.Layout;

/// <summary>Where one byte of the volume lives: its stripe, data chunk and member.</summary>
/// <param name="Stripe">The stripe number, from 0.</param>
/// <param name="DataIndex">The data chunk within the stripe (0..DataMemberCount-1); its index in the Q
/// syndrome.</param>
/// <param name="Member">The member disk holding it (for RAID-1 the first copy, member 0).</param>
/// <param name="OffsetInChunkBytes">The byte offset within the chunk.</param>
/// <param name="MemberOffsetBytes">The byte offset on the member device.</param>
public readonly record struct ChunkAddress(
    long Stripe,
    int DataIndex,
    int Member,
    int OffsetInChunkBytes,
    long MemberOffsetBytes);

/// <summary>
/// Maps volume offsets to (stripe, member, offset on member) and back, and names the parity
/// members of each stripe. Pure arithmetic, no I/O, safe to share between threads.
/// </summary>
/// <remarks>
/// Stripe <c>s</c> occupies, on every member, the chunk slot at
/// <c>DataOffsetBytes + s * ChunkStrideBytes</c> (the stride may exceed the chunk size to leave room
/// for per-chunk metadata). Within a stripe the volume's bytes run through the data chunks in
/// data-index order. Placement of the chunks on members (n = members, s = stripe):
/// <list type="bullet">
/// <item>RAID-0: data chunk i on member i.</item>
/// <item>RAID-1: the one data chunk on every member.</item>
/// <item>RAID-5, left-symmetric (md <c>ALGORITHM_LEFT_SYMMETRIC</c>, md's default):
/// P on member <c>n-1-(s mod n)</c>, data chunk i on member <c>(P+1+i) mod n</c>.</item>
/// <item>RAID-6, md's default left-symmetric: P on <c>n-1-(s mod n)</c>, Q on <c>(P+1) mod n</c>,
/// data chunk i on <c>(P+2+i) mod n</c>; Q's coefficient for data chunk i is g^i.</item>
/// </list>
/// </remarks>
public sealed class StripeLayout
{
    /// <summary>The <see cref="RoleOf"/> value of the P parity chunk.</summary>
    public const int RoleP = -1;

    /// <summary>The <see cref="RoleOf"/> value of the Q parity chunk.</summary>
    public const int RoleQ = -2;

    /// <param name="geometry">A valid geometry (validated here).</param>
    /// <param name="stripeCount">Stripes in the volume, at least 1.</param>
    /// <param name="dataOffsetBytes">Where stripe 0 starts on each member.</param>
    /// <param name="chunkStrideBytes">Distance between consecutive chunk slots on a member; 0 means the chunk
    /// size.</param>
    public StripeLayout(VolumeGeometry geometry, long stripeCount, long dataOffsetBytes = 0, long chunkStrideBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(geometry);
        Geometry = geometry.Validate();
        if (stripeCount < 1)
            throw new ArgumentOutOfRangeException(nameof(stripeCount), stripeCount, "at least 1 stripe is required.");
        if (dataOffsetBytes < 0)
            throw new ArgumentOutOfRangeException(nameof(dataOffsetBytes), dataOffsetBytes, "must be 0 or more.");
        if (chunkStrideBytes == 0) chunkStrideBytes = geometry.ChunkSizeBytes;
        if (chunkStrideBytes < geometry.ChunkSizeBytes)
            throw new ArgumentOutOfRangeException(
                nameof(chunkStrideBytes),
                chunkStrideBytes,
                $"must be at least the chunk size {geometry.ChunkSizeBytes}.");
        StripeCount = stripeCount;
        DataOffsetBytes = dataOffsetBytes;
        ChunkStrideBytes = chunkStrideBytes;
        _memberCount = geometry.MemberCount;
        _chunkShift = System.Numerics.BitOperations.Log2((uint)geometry.ChunkSizeBytes);
    }

    private readonly int _memberCount;
    private readonly int _chunkShift;

    /// <summary>The geometry this layout maps.</summary>
    public VolumeGeometry Geometry { get; }

    /// <summary>Stripes in the volume.</summary>
    public long StripeCount { get; }

    /// <summary>Where stripe 0 starts on each member.</summary>
    public long DataOffsetBytes { get; }

    /// <summary>Distance between consecutive chunk slots on a member.</summary>
    public long ChunkStrideBytes { get; }

    /// <summary>Logical capacity: stripes times data bytes per stripe.</summary>
    public long CapacityBytes => StripeCount * Geometry.StripeDataBytes;

    /// <summary>The stripe holding <paramref name="volumeOffsetBytes"/>.</summary>
    public long StripeOf(long volumeOffsetBytes) => volumeOffsetBytes / Geometry.StripeDataBytes;

    /// <summary>The first and last stripe a range of <paramref name="lengthBytes"/> (at least 1) touches.</summary>
    public (long First, long Last) StripeRange(long offsetBytes, long lengthBytes)
    {
        CheckOffset(offsetBytes);
        if (lengthBytes < 1 || offsetBytes + lengthBytes > CapacityBytes)
            throw new ArgumentOutOfRangeException(
                nameof(lengthBytes),
                lengthBytes,
                $"allowed: 1..{CapacityBytes - offsetBytes} bytes at offset {offsetBytes}.");
        return (StripeOf(offsetBytes), StripeOf(offsetBytes + lengthBytes - 1));
    }

    /// <summary>
    /// Byte offset on every member of stripe <paramref name="stripe"/>'s chunk slot plus
    /// <paramref name="offsetInChunkBytes"/>.
    /// </summary>
    public long MemberOffsetBytes(long stripe, int offsetInChunkBytes)
        => DataOffsetBytes + stripe * ChunkStrideBytes + offsetInChunkBytes;

    /// <summary>Locates a volume byte offset.</summary>
    public ChunkAddress Locate(long volumeOffsetBytes)
    {
        CheckOffset(volumeOffsetBytes);
        var chunkNumber = volumeOffsetBytes >> _chunkShift;
        var inChunk = (int)(volumeOffsetBytes & (Geometry.ChunkSizeBytes - 1));
        var stripe = chunkNumber / Geometry.DataMemberCount;
        var dataIndex = (int)(chunkNumber - stripe * Geometry.DataMemberCount);
        var member = DataMember(stripe, dataIndex);
        return new ChunkAddress(stripe, dataIndex, member, inChunk, MemberOffsetBytes(stripe, inChunk));
    }

    /// <summary>The volume offset of a byte of a data chunk; refuses parity members.</summary>
    public long ToVolumeOffset(long stripe, int member, int offsetInChunkBytes)
    {
        CheckStripe(stripe);
        if ((uint)offsetInChunkBytes >= (uint)Geometry.ChunkSizeBytes)
            throw new ArgumentOutOfRangeException(
                nameof(offsetInChunkBytes), offsetInChunkBytes, $"allowed: 0..{Geometry.ChunkSizeBytes - 1}.");
        var role = RoleOf(stripe, member);
        if (role < 0)
            throw new ArgumentException(
                $"member {member} holds {(role == RoleP ? "P" : "Q")} parity in stripe {stripe}, not volume data.",
                nameof(member));
        return stripe * Geometry.StripeDataBytes + ((long)role << _chunkShift) + offsetInChunkBytes;
    }

    /// <summary>
    /// The member holding data chunk <paramref name="dataIndex"/> of <paramref name="stripe"/> (RAID-1: member 0, the
    /// first copy).
    /// </summary>
    public int DataMember(long stripe, int dataIndex)
    {
        if ((uint)dataIndex >= (uint)Geometry.DataMemberCount)
            throw new ArgumentOutOfRangeException(
                nameof(dataIndex), dataIndex, $"allowed: 0..{Geometry.DataMemberCount - 1}.");
        return Geometry.Level switch
        {
            RaidLevel.Raid5 => (PMemberUnchecked(stripe) + 1 + dataIndex) % _memberCount,
            RaidLevel.Raid6 => (PMemberUnchecked(stripe) + 2 + dataIndex) % _memberCount,
            RaidLevel.Raid1 => 0,
            _ => dataIndex,
        };
    }

    /// <summary>The member holding P of <paramref name="stripe"/>, or -1 for levels without parity.</summary>
    public int ParityMember(long stripe) => Geometry.ParityMemberCount > 0 ? PMemberUnchecked(stripe) : -1;

    /// <summary>The member holding Q of <paramref name="stripe"/>, or -1 unless RAID-6.</summary>
    public int QMember(long stripe)
        => Geometry.ParityMemberCount == 2 ? (PMemberUnchecked(stripe) + 1) % _memberCount : -1;

    /// <summary>
    /// What <paramref name="member"/> holds in <paramref name="stripe"/>: a data index (0 or more),
    /// <see cref="RoleP"/> or <see cref="RoleQ"/>. RAID-1 members all hold data chunk 0.
    /// </summary>
    public int RoleOf(long stripe, int member)
    {
        if ((uint)member >= (uint)_memberCount)
            throw new ArgumentOutOfRangeException(nameof(member), member, $"allowed: 0..{_memberCount - 1}.");
        switch (Geometry.Level)
        {
            case RaidLevel.Raid0: return member;
            case RaidLevel.Raid1: return 0;
            case RaidLevel.Raid5:
            {
                var p = PMemberUnchecked(stripe);
                return member == p ? RoleP : (member - p - 1 + _memberCount) % _memberCount;
            }
            default:
            {
                var p = PMemberUnchecked(stripe);
                var q = (p + 1) % _memberCount;
                if (member == p) return RoleP;
                if (member == q) return RoleQ;
                return (member - p - 2 + 2 * _memberCount) % _memberCount;
            }
        }
    }

    /// <summary>Member index in stripe order for the parity math: data 0..d-1, then P, then Q.</summary>
    public int MemberAtLogicalSlot(long stripe, int slot)
    {
        var data = Geometry.DataMemberCount;
        if (slot < data) return DataMember(stripe, slot);
        if (slot == data) return ParityMember(stripe);
        if (slot == data + 1) return QMember(stripe);
        throw new ArgumentOutOfRangeException(
            nameof(slot), slot, $"allowed: 0..{data + Geometry.ParityMemberCount - 1}.");
    }

    private int PMemberUnchecked(long stripe) => _memberCount - 1 - (int)(stripe % _memberCount);

    private void CheckOffset(long volumeOffsetBytes)
    {
        if (volumeOffsetBytes < 0 || volumeOffsetBytes >= CapacityBytes)
            throw new ArgumentOutOfRangeException(
                nameof(volumeOffsetBytes), volumeOffsetBytes, $"allowed: 0..{CapacityBytes - 1}.");
    }

    private void CheckStripe(long stripe)
    {
        if (stripe < 0 || stripe >= StripeCount)
            throw new ArgumentOutOfRangeException(nameof(stripe), stripe, $"allowed: 0..{StripeCount - 1}.");
    }
}
