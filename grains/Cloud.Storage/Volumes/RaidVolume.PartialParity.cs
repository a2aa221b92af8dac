using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Parity;

namespace Cloud.Storage.Volumes;

// The partial parity log: before a write changes some data rows of a stripe and leaves others, the parity of the rows
// it leaves is written to the stripe's parity members, so that a writer dying together with members of that stripe
// (a host's kill in a cluster of hosts) cannot take the untouched, acknowledged rows with it (docs/WRITE-HOLE.md).
public sealed partial class RaidVolume
{
    // Entry header (4096 bytes; the entry's rows follow it), little-endian: see docs/FORMAT.md "Partial-parity area".
    private const int PplOffVolume = 8, PplOffSlot = 24, PplOffKind = 28, PplOffStripe = 32, PplOffTimestamp = 40,
        PplOffRow0 = 48, PplOffRow1 = 52, PplOffDataCount = 56, PplOffPayloadHash = 64, PplOffRanges = 72,
        PplOffHeaderHash = OnDiskFormat.PartialParityHeaderBytes - 8;

    private const int PplKindP = 0, PplKindQ = 1;

    private static readonly byte[] s_zeroRows = new byte[VolumeGeometry.MaxChunkSizeBytes];

    private readonly long _pplSlotBytes;
    private readonly long _pplAreaOffset;
    private readonly PartialParityRing[] _pplRings;
    private readonly SemaphoreSlim _pplIndexGate = new(1, 1);
    private Dictionary<long, List<PartialParityEntry>>? _pplIndex;
    private ulong _pplIndexLost;
    private long _pplRowsRepaired;

    /// <summary>
    /// One entry read back from a ring: the parity (P or Q) of a stripe's rows a write left untouched (the first
    /// <c>(Row1 - Row0) * 4096</c> bytes of <see cref="PartialParityEntry.Rows"/>), then each row's guard.
    /// </summary>
    private sealed record PartialParityEntry(
        int Slot, int Kind, long Stripe, long Timestamp, int Row0, int Row1, int[] First, int[] End, byte[] Rows);

    /// <summary>The volume keeps a partial parity log (<see cref="RaidVolumeOptions.PartialParityLog"/> at create).</summary>
    public bool KeepsPartialParityLog => _pplSlotBytes > 0;

    /// <summary>Parity rows rewritten from the partial parity log since this opener assembled the volume.</summary>
    public long PartialParityRowsRepaired => Interlocked.Read(ref _pplRowsRepaired);

    /// <summary>
    /// Makes the next reconstruction read every writer's partial-parity ring again. The engine does so by itself when a
    /// member is lost; call it when a writer is known to have died (its last entries may be newer than this opener's
    /// reading of the rings).
    /// </summary>
    public void ForgetPartialParityIndex() => Volatile.Write(ref _pplIndex, null);

    private long PartialParitySlotOffset(int slot) => _pplAreaOffset + slot * _pplSlotBytes;

    /// <summary>
    /// Writes the partial parity of rows [r0, r1) of the stripe in the scratch (its new data rows and new parity are in
    /// the images) to the usable parity members, in this writer's ring, and waits for it. Returns where each landed in
    /// its member's ring (-1: not written), to give back once the stripe's writes have ended.
    /// </summary>
    private async ValueTask<(long P, long Q)> WritePartialParityAsync(
        StripeScratch s,
        long stripe,
        int r0,
        int r1,
        long timestamp,
        CancellationToken cancellationToken)
    {
        var rowBytes = (r1 - r0) * B;
        var length = PartialParityEntryBytes(r1 - r0);
        var payloadBytes = length - OnDiskFormat.PartialParityHeaderBytes;
        var pm = s.SlotMember[_dataCount];
        var qm = _parityCount == 2 ? s.SlotMember[_dataCount + 1] : -1;
        var pBuffer = ArrayPool<byte>.Shared.Rent(length);
        var qBuffer = qm >= 0 ? ArrayPool<byte>.Shared.Rent(length) : null;
        long pAt = -1, qAt = -1;
        try
        {
            pBuffer.AsSpan(0, length).Clear();
            qBuffer?.AsSpan(0, length).Clear();
            Span<byte> pp = pBuffer.AsSpan(OnDiskFormat.PartialParityHeaderBytes, rowBytes);
            Span<byte> pq = qBuffer is null ? default : qBuffer.AsSpan(OnDiskFormat.PartialParityHeaderBytes, rowBytes);
            // Each parity row's guard: its stamp and checksum before this write (read with the stripe) and its checksum
            // after, so that a reader can tell this write's rows from a later write's.
            WriteGuards(pBuffer.AsSpan(OnDiskFormat.PartialParityHeaderBytes + rowBytes), s, pm, r0, r1);
            if (qBuffer is not null)
                WriteGuards(qBuffer.AsSpan(OnDiskFormat.PartialParityHeaderBytes + rowBytes), s, qm, r0, r1);
            Rows(s.Buffer, pm, r0, r1).CopyTo(pp);
            if (qBuffer is not null) Rows(s.Buffer, qm, r0, r1).CopyTo(pq);
            // New parity minus the rows this write puts leaves the parity of the rows it does not touch.
            for (var d = 0; d < _dataCount; d++)
            {
                int a = Math.Max(s.First[d], r0), e = Math.Min(s.End[d], r1);
                if (a >= e) continue;
                RaidMath.ApplyDelta(
                    d,
                    Rows(s.Buffer, s.SlotMember[d], a, e),
                    s_zeroRows.AsSpan(0, (e - a) * B),
                    pp.Slice((a - r0) * B, (e - a) * B),
                    qBuffer is null ? Span<byte>.Empty : pq.Slice((a - r0) * B, (e - a) * B));
            }
            WritePartialParityHeader(
                pBuffer, PplKindP, stripe, timestamp, r0, r1, s, pBuffer.AsSpan(OnDiskFormat.PartialParityHeaderBytes, payloadBytes));
            if (qBuffer is not null)
                WritePartialParityHeader(
                    qBuffer, PplKindQ, stripe, timestamp, r0, r1, s,
                    qBuffer.AsSpan(OnDiskFormat.PartialParityHeaderBytes, payloadBytes));
            var rooms = await PartialParityRing.TakeInMemberOrderAsync(
                _pplRings,
                [IsUsable(pm, stripe) ? pm : -1, qm >= 0 && IsUsable(qm, stripe) ? qm : -1],
                length,
                cancellationToken).ConfigureAwait(false);
            (pAt, qAt) = (rooms[0], rooms[1]);
            var ring = PartialParitySlotOffset(_options.WriterSlot);
            var n = 0;
            if (pAt >= 0) s.Tasks[n++] = MemberWriteAsync(pm, ring + pAt, pBuffer.AsMemory(0, length), CancellationToken.None);
            if (qAt >= 0) s.Tasks[n++] = MemberWriteAsync(qm, ring + qAt, qBuffer.AsMemory(0, length), CancellationToken.None);
            await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
            return (pAt, qAt);
        }
        catch
        {
            GivePartialParity(s, (pAt, qAt));
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(pBuffer);
            if (qBuffer is not null) ArrayPool<byte>.Shared.Return(qBuffer);
        }
    }

    /// <summary>
    /// Whether this write's untouched rows can be lost with this writer: when a member of the stripe is missing already
    /// (the writer's crash alone then leaves a torn stripe that cannot be resynced), or when this writer's own host
    /// holds a member of it (a device here rather than another host's disk service: the host's death takes it too) that
    /// the loss could leave unsolvable. For RAID-5 that is a data chunk with rows the write does not change; for RAID-6,
    /// any member, since a second host may die with it. A writer whose host holds none of the stripe's members, on a
    /// whole stripe, needs nothing but the write-intent resync.
    /// </summary>
    private bool NeedsPartialParity(StripeScratch s, long stripe, int r0, int r1)
    {
        for (var k = 0; k < _dataCount + _parityCount; k++)
        {
            var m = s.SlotMember[k];
            if (!IsUsable(m, stripe)) return true;
            if (_devices[m] is RemoteBlockDevice) continue;
            if (_parityCount == 2 || (k < _dataCount && (s.First[k] != r0 || s.End[k] != r1))) return true;
        }
        return false;
    }

    private static int PartialParityEntryBytes(int rows) => OnDiskFormat.PartialParityEntryBytes(rows);

    private const int PplGuardBytes = OnDiskFormat.PartialParityGuardBytes;

    /// <summary>
    /// Per row of [r0, r1) of parity member m: the stamp and checksum its metadata holds now (before the write's
    /// stamping) and the checksum of its new bytes in the image.
    /// </summary>
    private void WriteGuards(Span<byte> guards, StripeScratch s, int m, int r0, int r1)
    {
        ReadOnlySpan<byte> meta = Meta(s.Buffer, m);
        for (var r = r0; r < r1; r++)
        {
            Span<byte> g = guards.Slice((r - r0) * PplGuardBytes, PplGuardBytes);
            (var ts, var sum) = OnDiskFormat.ReadEntry(meta, r);
            BinaryPrimitives.WriteInt64LittleEndian(g, ts);
            BinaryPrimitives.WriteUInt64LittleEndian(g[8..], sum);
            BinaryPrimitives.WriteUInt64LittleEndian(g[16..], OnDiskFormat.BlockChecksum(Rows(s.Buffer, m, r, r + 1)));
        }
    }

    /// <summary>Gives back the ring room of a stripe write's entries once its member writes have ended.</summary>
    private void GivePartialParity(StripeScratch s, (long P, long Q) at)
    {
        if (at.P >= 0) _pplRings[s.SlotMember[_dataCount]].Give(at.P);
        if (at.Q >= 0) _pplRings[s.SlotMember[_dataCount + 1]].Give(at.Q);
    }

    private void WritePartialParityHeader(
        Span<byte> h,
        int kind,
        long stripe,
        long timestamp,
        int r0,
        int r1,
        StripeScratch s,
        ReadOnlySpan<byte> rows)
    {
        h = h[..OnDiskFormat.PartialParityHeaderBytes];
        h.Clear();
        OnDiskFormat.PartialParityMagic.CopyTo(h);
        Definition.VolumeId.TryWriteBytes(h[PplOffVolume..]);
        BinaryPrimitives.WriteInt32LittleEndian(h[PplOffSlot..], _options.WriterSlot);
        BinaryPrimitives.WriteInt32LittleEndian(h[PplOffKind..], kind);
        BinaryPrimitives.WriteInt64LittleEndian(h[PplOffStripe..], stripe);
        BinaryPrimitives.WriteInt64LittleEndian(h[PplOffTimestamp..], timestamp);
        BinaryPrimitives.WriteInt32LittleEndian(h[PplOffRow0..], r0);
        BinaryPrimitives.WriteInt32LittleEndian(h[PplOffRow1..], r1);
        BinaryPrimitives.WriteInt32LittleEndian(h[PplOffDataCount..], _dataCount);
        BinaryPrimitives.WriteUInt64LittleEndian(h[PplOffPayloadHash..], XxHash3.HashToUInt64(rows));
        for (var d = 0; d < _dataCount; d++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(h[(PplOffRanges + 8 * d)..], s.First[d]);
            BinaryPrimitives.WriteInt32LittleEndian(h[(PplOffRanges + 8 * d + 4)..], s.End[d]);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(h[PplOffHeaderHash..], XxHash3.HashToUInt64(h[..PplOffHeaderHash]));
    }

    /// <summary>The entry whose header starts at <paramref name="at"/> of a ring read from member m, if it is whole.</summary>
    private PartialParityEntry? ParsePartialParity(ReadOnlySpan<byte> ring, int at, int member, int slot)
    {
        ReadOnlySpan<byte> h = ring.Slice(at, OnDiskFormat.PartialParityHeaderBytes);
        if (!h.StartsWith(OnDiskFormat.PartialParityMagic)
            || XxHash3.HashToUInt64(h[..PplOffHeaderHash]) != BinaryPrimitives.ReadUInt64LittleEndian(h[PplOffHeaderHash..])
            || new Guid(h.Slice(PplOffVolume, 16)) != Definition.VolumeId
            || BinaryPrimitives.ReadInt32LittleEndian(h[PplOffSlot..]) != slot
            || BinaryPrimitives.ReadInt32LittleEndian(h[PplOffDataCount..]) != _dataCount)
            return null;
        var kind = BinaryPrimitives.ReadInt32LittleEndian(h[PplOffKind..]);
        var stripe = BinaryPrimitives.ReadInt64LittleEndian(h[PplOffStripe..]);
        int r0 = BinaryPrimitives.ReadInt32LittleEndian(h[PplOffRow0..]), r1 = BinaryPrimitives.ReadInt32LittleEndian(h[PplOffRow1..]);
        if (kind is not (PplKindP or PplKindQ) || kind >= _parityCount || stripe < 0 || stripe >= StripeCount
            || r0 < 0 || r0 >= r1 || r1 > _blocksPerChunk
            || Layout.MemberAtLogicalSlot(stripe, _dataCount + kind) != member)
            return null;
        var payloadBytes = PartialParityEntryBytes(r1 - r0) - OnDiskFormat.PartialParityHeaderBytes;
        var start = at + OnDiskFormat.PartialParityHeaderBytes;
        if (start + payloadBytes > ring.Length) return null;
        ReadOnlySpan<byte> payload = ring.Slice(start, payloadBytes);
        if (XxHash3.HashToUInt64(payload) != BinaryPrimitives.ReadUInt64LittleEndian(h[PplOffPayloadHash..])) return null;
        var first = new int[_dataCount];
        var end = new int[_dataCount];
        for (var d = 0; d < _dataCount; d++)
        {
            first[d] = BinaryPrimitives.ReadInt32LittleEndian(h[(PplOffRanges + 8 * d)..]);
            end[d] = BinaryPrimitives.ReadInt32LittleEndian(h[(PplOffRanges + 8 * d + 4)..]);
            if (first[d] > end[d] || (first[d] < end[d] && (first[d] < r0 || end[d] > r1))) return null;
        }
        return new PartialParityEntry(slot, kind, stripe, BinaryPrimitives.ReadInt64LittleEndian(h[PplOffTimestamp..]),
            r0, r1, first, end, payload.ToArray());
    }

    /// <summary>Members lost to this opener (absent, missing or failed).</summary>
    private ulong LostMembers()
    {
        ulong mask = 0;
        for (var m = 0; m < _memberCount; m++)
            if (_devices[m] is null || _states[m] is MemberState.Failed or MemberState.Missing) mask |= 1UL << m;
        return mask;
    }

    /// <summary>
    /// Every whole entry of every writer's ring on the members still here, by stripe. Read again when a member was lost
    /// since the last reading (a writer that died with it wrote its last entries before) or when told
    /// (<see cref="ForgetPartialParityIndex"/>).
    /// </summary>
    private async ValueTask<Dictionary<long, List<PartialParityEntry>>> PartialParityIndexAsync(
        CancellationToken cancellationToken)
    {
        Dictionary<long, List<PartialParityEntry>>? index = Volatile.Read(ref _pplIndex);
        if (index is not null && (LostMembers() & ~Volatile.Read(ref _pplIndexLost)) == 0) return index;
        await _pplIndexGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var lost = LostMembers();
            index = _pplIndex;
            if (index is not null && (lost & ~_pplIndexLost) == 0) return index;
            index = [];
            var ring = new byte[_pplSlotBytes];
            for (var m = 0; m < _memberCount; m++)
            {
                if (_devices[m] is null || !IsWritable(m)) continue;
                for (var slot = 0; slot < OnDiskFormat.IntentSlotCount; slot++)
                {
                    // A writer's first entry lands at its ring's start (room is taken first fit from there), so a ring
                    // whose first page is zero was never written: one page read instead of the ring for the slots no
                    // writer used (the area is not zeroed at create; a reused disk's leftovers are read in full).
                    if (!await MemberReadAsync(
                            m, PartialParitySlotOffset(slot), ring.AsMemory(0, OnDiskFormat.PartialParityHeaderBytes),
                            cancellationToken).ConfigureAwait(false))
                        break;
                    if (ring.AsSpan(0, OnDiskFormat.PartialParityHeaderBytes).IndexOfAnyExcept((byte)0) < 0) continue;
                    if (!await MemberReadAsync(m, PartialParitySlotOffset(slot), ring, cancellationToken)
                        .ConfigureAwait(false))
                        break;
                    for (var at = 0; at + OnDiskFormat.PartialParityHeaderBytes <= ring.Length;
                         at += OnDiskFormat.PartialParityHeaderBytes)
                    {
                        if (ParsePartialParity(ring, at, m, slot) is not { } e) continue;
                        if (!index.TryGetValue(e.Stripe, out List<PartialParityEntry>? list))
                            index[e.Stripe] = list = [];
                        list.Add(e);
                    }
                }
            }
            Volatile.Write(ref _pplIndexLost, lost | LostMembers());
            Volatile.Write(ref _pplIndex, index);
            return index;
        }
        finally { _pplIndexGate.Release(); }
    }

    /// <summary>
    /// Before a stripe with members missing is reconstructed: makes its parity agree with what the partial parity log
    /// says of the rows a dead writer's last write left untouched. The caller holds the stripe's lock.
    /// </summary>
    private async ValueTask RepairFromPartialParityAsync(long stripe, CancellationToken cancellationToken)
    {
        if (_pplSlotBytes == 0) return;
        var degraded = false;
        for (var m = 0; m < _memberCount && !degraded; m++) degraded = !IsUsable(m, stripe);
        if (!degraded) return;
        Dictionary<long, List<PartialParityEntry>> index =
            await PartialParityIndexAsync(cancellationToken).ConfigureAwait(false);
        PartialParityEntry[] entries;
        lock (index)
        {
            if (!index.TryGetValue(stripe, out List<PartialParityEntry>? list)) return;
            entries = [.. list];
        }
        foreach (var write in entries.GroupBy(e => (e.Slot, e.Timestamp, e.Row0, e.Row1)).OrderBy(g => g.Key.Timestamp))
        {
            PartialParityEntry? p = write.FirstOrDefault(e => e.Kind == PplKindP);
            PartialParityEntry? q = write.FirstOrDefault(e => e.Kind == PplKindQ);
            await ApplyPartialParityAsync(stripe, (p ?? q)!, p?.Rows, q?.Rows, cancellationToken).ConfigureAwait(false);
        }
        lock (index) index.Remove(stripe);
    }

    /// <summary>
    /// Applies one write's entries to its stripe. Per row the write covered, if it is the last write that reached the row
    /// (<see cref="WriteIsLastOnRow"/>): the missing data chunks the write left untouched are solved from the partial
    /// parity and the rows still here; a missing chunk the write changed takes what the parity on disk says (its write
    /// was never acknowledged); the parity is computed again from those and rewritten where it differs. A changed data
    /// block here whose checksum disagrees (its data and metadata writes did not both land) is re-stamped as it is, as
    /// the write-intent resync does.
    /// </summary>
    private async ValueTask ApplyPartialParityAsync(
        long stripe,
        PartialParityEntry e,
        byte[]? pp,
        byte[]? pq,
        CancellationToken cancellationToken)
    {
        StripeScratch s = _scratchPool.Rent();
        try
        {
            ResetScratch(s, stripe);
            var slots = _dataCount + _parityCount;
            int r0 = e.Row0, r1 = e.Row1;
            var n = 0;
            for (var k = 0; k < slots; k++)
            {
                var m = s.SlotMember[k];
                if (s.Usable[m]) s.Tasks[n++] = ReadSlotAsync(s, m, stripe, r0, r1, cancellationToken);
            }
            await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
            for (var k = 0; k < slots; k++) s.Usable[s.SlotMember[k]] &= IsUsable(s.SlotMember[k], stripe);

            var solved = new Memory<byte>[slots];
            var real = new Memory<byte>[slots];
            var data = new ReadOnlyMemory<byte>[_dataCount];
            var work = new byte[2 * slots * B];
            var parity = new byte[_parityCount * B];
            var missing = new int[slots];
            var writeFirst = new int[_memberCount];
            var writeEnd = new int[_memberCount];
            Array.Fill(writeFirst, -1);
            long repaired = 0;
            for (var r = r0; r < r1; r++)
            {
                if (!WriteIsLastOnRow(s, e, pp, pq, r)) continue;
                // The write's untouched rows as the log has them: changed rows count as zero, untouched ones present
                // as they are, untouched ones missing are solved.
                var lostUntouched = 0;
                var nm = 0;
                for (var k = 0; k < _dataCount; k++)
                {
                    var m = s.SlotMember[k];
                    if (Changed(e, k, r)) solved[k] = s_zeroRows.AsMemory(0, B);
                    else if (s.Usable[m]) solved[k] = s.Buffer.AsMemory(m * _slotBytes + r * B, B);
                    else
                    {
                        solved[k] = work.AsMemory(2 * k * B, B);
                        missing[nm++] = k;
                        lostUntouched++;
                    }
                }
                if (lostUntouched == 0) continue;
                for (var j = 0; j < _parityCount; j++)
                {
                    var log = j == 0 ? pp : pq;
                    if (log is not null && s.Usable[s.SlotMember[_dataCount + j]])
                        solved[_dataCount + j] = log.AsMemory((r - r0) * B, B);
                    else
                    {
                        solved[_dataCount + j] = work.AsMemory(2 * (_dataCount + j) * B, B);
                        missing[nm++] = _dataCount + j;
                    }
                }
                if (nm > _parityCount) continue;
                RaidMath.Reconstruct(solved, _parityCount, missing.AsSpan(0, nm));

                // The stripe as it will read: rows here as they are, the untouched lost rows as solved, a changed lost
                // row as the parity on disk gives it.
                var nr = 0;
                for (var k = 0; k < slots; k++)
                {
                    var m = s.SlotMember[k];
                    if (s.Usable[m]) real[k] = s.Buffer.AsMemory(m * _slotBytes + r * B, B);
                    else if (k < _dataCount && !Changed(e, k, r)) real[k] = solved[k];
                    else
                    {
                        real[k] = work.AsMemory((2 * k + 1) * B, B);
                        missing[nr++] = k;
                    }
                }
                if (nr > _parityCount) continue;
                if (nr > 0) RaidMath.Reconstruct(real, _parityCount, missing.AsSpan(0, nr));
                for (var k = 0; k < _dataCount; k++) data[k] = real[k];
                if (_parityCount == 1) RaidMath.ComputeP(data, parity);
                else RaidMath.ComputePQ(data, parity.AsSpan(0, B), parity.AsSpan(B, B));
                for (var k = 0; k < slots; k++)
                {
                    var m = s.SlotMember[k];
                    if (!s.Usable[m]) continue;
                    Span<byte> row = Rows(s.Buffer, m, r, r + 1);
                    Span<byte> meta = Meta(s.Buffer, m);
                    (var ts, var sum) = OnDiskFormat.ReadEntry(meta, r);
                    if (k >= _dataCount)
                    {
                        ReadOnlySpan<byte> fresh = parity.AsSpan((k - _dataCount) * B, B);
                        if (fresh.SequenceEqual(row) && OnDiskFormat.BlockChecksum(row) == sum) continue;
                        fresh.CopyTo(row);
                        OnDiskFormat.WriteEntry(meta, r, e.Timestamp, OnDiskFormat.BlockChecksum(row));
                        repaired++;
                    }
                    else if (Changed(e, k, r) && !OnDiskFormat.Verify(row, meta, r))
                        OnDiskFormat.WriteEntry(meta, r, ts, OnDiskFormat.BlockChecksum(row));
                    else continue;
                    if (writeFirst[m] < 0) writeFirst[m] = r;
                    writeEnd[m] = r + 1;
                }
            }
            n = 0;
            for (var m = 0; m < _memberCount; m++)
            {
                if (writeFirst[m] < 0) continue;
                var parityMember = m == s.SlotMember[_dataCount] || (_parityCount == 2 && m == s.SlotMember[_dataCount + 1]);
                // Parity rows and their entries; for a data member only its metadata sector.
                s.Tasks[n++] = parityMember
                    ? WriteSlotAsync(s, m, stripe, writeFirst[m], writeEnd[m])
                    : WriteSlotAsync(s, m, stripe, 0, 0);
            }
            await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
            Interlocked.Add(ref _pplRowsRepaired, repaired);
        }
        finally { _scratchPool.Return(s); }
    }

    private static bool Changed(PartialParityEntry e, int dataSlot, int row) =>
        row >= e.First[dataSlot] && row < e.End[dataSlot];

    /// <summary>
    /// The entry's write is the last one that reached row <paramref name="r"/>: each parity member still here that has
    /// the entry holds the row as the entry's guard says it was before the write (the write's parity did not land) or
    /// after it (stamped with its timestamp, the new checksum). A later write restamps and rewrites the row; timestamps
    /// alone cannot tell, since writes to different blocks of a row reach the disks in an order of their own.
    /// </summary>
    private bool WriteIsLastOnRow(StripeScratch s, PartialParityEntry e, byte[]? pp, byte[]? pq, int r)
    {
        var checkedOne = false;
        for (var j = 0; j < _parityCount; j++)
        {
            var log = j == 0 ? pp : pq;
            var m = s.SlotMember[_dataCount + j];
            if (log is null || !s.Usable[m]) continue;
            ReadOnlySpan<byte> g = log.AsSpan((e.Row1 - e.Row0) * B + (r - e.Row0) * PplGuardBytes, PplGuardBytes);
            (var ts, var sum) = OnDiskFormat.ReadEntry(Meta(s.Buffer, m), r);
            var before = ts == BinaryPrimitives.ReadInt64LittleEndian(g) && sum == BinaryPrimitives.ReadUInt64LittleEndian(g[8..]);
            var after = ts == e.Timestamp && sum == BinaryPrimitives.ReadUInt64LittleEndian(g[16..]);
            if (!before && !after) return false;
            checkedOne = true;
        }
        return checkedOne;
    }
}
