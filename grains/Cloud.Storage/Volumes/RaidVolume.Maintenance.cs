using System.Buffers;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Parity;

namespace Cloud.Storage.Volumes;

// Rebuild, scrub and write-hole resync: whole-stripe work under the stripe lock, one stripe at a time,
// so foreground I/O to other stripes continues.
public sealed partial class RaidVolume
{
    /// <summary>
    /// Rebuilds every member in <see cref="MemberState.Rebuilding"/> from the others, stripe by stripe,
    /// while reads and writes continue. Progress is checkpointed in the superblocks, so an interrupted
    /// rebuild resumes where it stopped. The member becomes active when done.
    /// </summary>
    /// <remarks>
    /// For a volume that only this instance writes. When other instances (silos) write the same members, they learn
    /// the cursor only from the superblocks, so a stripe rebuilt here but not yet checkpointed is written there
    /// without the new member; use <see cref="RebuildStripesAsync"/> under their cluster-wide locks instead.
    /// </remarks>
    public async ValueTask RebuildAsync(IProgress<RebuildProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckUsable();
        var checkpoint = _options.RebuildCheckpointStripes;
        for (var m = 0; m < _memberCount; m++)
        {
            if (!IsCatchingUp(m)) continue;
            while (Volatile.Read(ref _cursors[m]) < StripeCount)
            {
                // Checkpoints at multiples of the interval, wherever the rebuild resumed.
                var end = Math.Min(StripeCount, (Volatile.Read(ref _cursors[m]) / checkpoint + 1) * checkpoint);
                await RebuildMemberAsync(m, end, progress, cancellationToken).ConfigureAwait(false);
                if (end == StripeCount) break;
                await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
                await WriteSuperblocksAsync(cancellationToken).ConfigureAwait(false);
            }
            await CompleteRebuildsAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The first stripe a rebuild still has to rebuild: the lowest cursor of a member in
    /// <see cref="MemberState.Rebuilding"/>, or <see cref="StripeCount"/> when no member is rebuilding.
    /// </summary>
    public long RebuildCursorStripes
    {
        get
        {
            var cursor = StripeCount;
            lock (_stateGate)
                for (var m = 0; m < _memberCount; m++)
                    if (IsCatchingUp(m)) cursor = Math.Min(cursor, Volatile.Read(ref _cursors[m]));
            return cursor;
        }
    }

    /// <summary>
    /// Rebuilds every rebuilding member's stripes from its cursor up to <paramref name="endStripe"/> (exclusive), then
    /// records the new cursors in the superblocks, and returns only after that update (and, through the
    /// <see cref="ISuperblockCoordinator"/>, other instances' re-reading of it) is done; a member rebuilt to the end
    /// becomes active in the same update. For several instances writing the same members: the caller holds their
    /// cluster-wide exclusive lock on the stripes from the lowest cursor to <paramref name="endStripe"/> until this
    /// returns, so that no other instance writes a stripe while it is rebuilt, nor afterwards without the new member.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="endStripe"/> is not in 0..<see cref="StripeCount"/>.
    /// </exception>
    public async ValueTask RebuildStripesAsync(
        long endStripe,
        IProgress<RebuildProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        if (endStripe < 0 || endStripe > StripeCount)
            throw new ArgumentOutOfRangeException(nameof(endStripe), endStripe, $"allowed: 0..{StripeCount}.");
        CheckUsable();
        for (var m = 0; m < _memberCount; m++)
            if (IsCatchingUp(m))
                await RebuildMemberAsync(m, endStripe, progress, cancellationToken).ConfigureAwait(false);
        if (endStripe == StripeCount)
        {
            await CompleteRebuildsAsync(cancellationToken).ConfigureAwait(false);
            return;
        }
        await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
        await WriteSuperblocksAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A member being rebuilt whole, or catching up after an absence: its cursor has stripes to pass.</summary>
    private bool IsCatchingUp(int m) => _states[m] is MemberState.Rebuilding or MemberState.Resyncing;

    /// <summary>
    /// Bytes this opener has written to rebuilding and catching-up members (chunks and metadata sectors), for
    /// <see cref="RebuildProgress.BytesMoved"/>.
    /// </summary>
    public long RebuildBytesMoved => Interlocked.Read(ref _rebuildBytesMoved);

    private long _rebuildBytesMoved;

    /// <summary>
    /// Rebuilds member <paramref name="m"/>'s stripes from its cursor up to <paramref name="endStripe"/>. A member
    /// catching up (<see cref="MemberState.Resyncing"/>) is rebuilt only on the stripes the away record marks, read
    /// here, after the caller's locks on these stripes were taken; its cursor passes the others without I/O.
    /// </summary>
    private async ValueTask RebuildMemberAsync(
        int m,
        long endStripe,
        IProgress<RebuildProgress>? progress,
        CancellationToken cancellationToken)
    {
        var record = _states[m] == MemberState.Resyncing
            ? await ReadAwayRecordAsync(cancellationToken).ConfigureAwait(false)
            : null;
        for (var stripe = Volatile.Read(ref _cursors[m]); stripe < endStripe; stripe++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (record is null || !await TrySkipCaughtUpStripeAsync(m, stripe, record, cancellationToken).ConfigureAwait(false))
            {
                await RebuildStripeAsync(m, stripe, cancellationToken).ConfigureAwait(false);
                Interlocked.Add(ref _rebuildBytesMoved, _slotBytes);
            }
            if (!IsCatchingUp(m))
                throw new VolumeDataLossException($"volume '{Name}': member {m} failed during its rebuild at stripe {stripe}: {_reasons[m]}.");
            var p = new RebuildProgress(m, stripe + 1, StripeCount, RebuildBytesMoved);
            lock (_stateGate) _rebuild = p;
            progress?.Report(p);
        }
    }

    /// <summary>Makes every member rebuilt to the last stripe active, durably.</summary>
    private async ValueTask CompleteRebuildsAsync(CancellationToken cancellationToken)
    {
        await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
        lock (_stateGate)
        {
            for (var m = 0; m < _memberCount; m++)
                if (IsCatchingUp(m) && Volatile.Read(ref _cursors[m]) >= StripeCount)
                    _states[m] = MemberState.Active;
            _rebuild = null;
        }
        await WriteSuperblocksAsync(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask RebuildStripeAsync(int target, long stripe, CancellationToken cancellationToken)
    {
        using LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false);
        StripeScratch s = locked.Scratch;
        ThrowIfFailed();
        ResetScratch(s, stripe);
        if (Geometry.Level == RaidLevel.Raid1)
        {
            await ReadUsableSlotsAsync(s, stripe, cancellationToken).ConfigureAwait(false);
            await RepairMirrorRowsAsync(s, stripe, 0, _blocksPerChunk).ConfigureAwait(false);
            Buffer.BlockCopy(s.Buffer, s.SlotMember[0] * _slotBytes, s.Buffer, target * _slotBytes, _slotBytes);
        }
        else
        {
            // Target is not usable for this stripe yet, so it counts as missing in every row.
            await LoadAndReconstructAsync(s, stripe, 0, _blocksPerChunk, Need.All, cancellationToken).ConfigureAwait(false);
            StampRebuilt(s, stripe, target);
        }
        if (!await WriteSlotAsync(s, target, stripe, 0, _blocksPerChunk).ConfigureAwait(false)) return;
        // Advance under the lock: writes to this stripe from now on include the new member.
        Volatile.Write(ref _cursors[target], stripe + 1);
    }

    /// <summary>Reads every usable member's whole chunk and metadata sector of <paramref name="stripe"/> into the scratch.</summary>
    private async ValueTask ReadUsableSlotsAsync(StripeScratch s, long stripe, CancellationToken cancellationToken)
    {
        var n = 0;
        for (var m = 0; m < _memberCount; m++)
            if (s.Usable[m]) s.Tasks[n++] = ReadSlotAsync(s, m, stripe, 0, _blocksPerChunk, cancellationToken);
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
    }

    /// <summary>
    /// Drops members that failed during the last reads from <see cref="StripeScratch.Usable"/> and verifies every
    /// block of the others, marking the bad ones; returns how many were bad.
    /// </summary>
    private int VerifyUsableSlots(StripeScratch s, long stripe)
    {
        var bad = 0;
        for (var m = 0; m < _memberCount; m++)
        {
            s.Usable[m] = s.Usable[m] && IsUsable(m, stripe);
            if (s.Usable[m]) bad += VerifyRows(s, m, 0, _blocksPerChunk);
        }
        return bad;
    }

    /// <summary>
    /// Metadata for a reconstructed chunk. A data block gets its row's parity timestamp (the newest
    /// write to the row, an upper bound on its own); a parity block gets the newest data timestamp
    /// of its row. Rows never written keep all-zero entries.
    /// </summary>
    private void StampRebuilt(StripeScratch s, long stripe, int target)
    {
        var targetRole = Layout.RoleOf(stripe, target);
        Span<byte> meta = Meta(s.Buffer, target);
        for (var r = 0; r < _blocksPerChunk; r++)
        {
            long ts = 0;
            var written = false;
            for (var k = 0; k < _dataCount + _parityCount; k++)
            {
                var m = s.SlotMember[k];
                if (m == target || !s.Usable[m]) continue;
                var sameKind = (k < _dataCount) == (targetRole >= 0);
                if (sameKind) continue;
                (var t, var sum) = OnDiskFormat.ReadEntry(Meta(s.Buffer, m), r);
                written |= t != 0 || sum != 0;
                ts = Math.Max(ts, t);
            }
            if (written) OnDiskFormat.WriteEntry(meta, r, ts, OnDiskFormat.BlockChecksum(Rows(s.Buffer, target, r, r + 1)));
            else OnDiskFormat.WriteEntry(meta, r, 0, 0);
        }
        meta[(_blocksPerChunk * OnDiskFormat.MetadataEntryBytes)..].Clear();
    }

    /// <summary>
    /// Reads every stripe, checks each block's checksum and each stripe's parity (or mirror copies),
    /// and with <paramref name="repair"/> rewrites what is wrong: corrupt blocks from redundancy,
    /// parity from data when they disagree. Foreground I/O continues.
    /// </summary>
    public ValueTask<ScrubReport> ScrubAsync(bool repair, IProgress<ScrubProgress>? progress = null, CancellationToken cancellationToken = default) =>
        ScrubRangeAsync(0, StripeCount - 1, repair, progress, cancellationToken);

    /// <summary>
    /// <see cref="ScrubAsync"/> of stripes <paramref name="firstStripe"/> to <paramref name="lastStripe"/> (inclusive).
    /// The stripe lock taken here excludes this instance's own writers only: when other instances write the same
    /// members (several silos), the caller must hold their cluster-wide lock on these stripes, shared to check and
    /// exclusive to repair, or a repair computed from a half-written stripe overwrites their new parity or data.
    /// </summary>
    public ValueTask<ScrubReport> ScrubStripesAsync(long firstStripe, long lastStripe, bool repair, CancellationToken cancellationToken = default)
    {
        if (firstStripe < 0 || lastStripe < firstStripe || lastStripe >= StripeCount)
            throw new ArgumentOutOfRangeException(nameof(lastStripe), $"stripes {firstStripe}-{lastStripe} are not a range of 0-{StripeCount - 1}");
        return ScrubRangeAsync(firstStripe, lastStripe, repair, null, cancellationToken);
    }

    private async ValueTask<ScrubReport> ScrubRangeAsync(long firstStripe, long lastStripe, bool repair, IProgress<ScrubProgress>? progress, CancellationToken cancellationToken)
    {
        CheckUsable();
        long mismatches = 0, checksumErrors = 0, repaired = 0, unrecoverable = 0;
        var total = lastStripe - firstStripe + 1;
        for (var stripe = firstStripe; stripe <= lastStripe; stripe++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false))
            {
                ThrowIfFailed();
                StripeScrub result = await ScrubStripeAsync(locked.Scratch, stripe, repair, cancellationToken).ConfigureAwait(false);
                checksumErrors += result.Bad;
                if (result.Mismatch) mismatches++;
                if (result.Repaired) repaired++;
                if (result.Lost) unrecoverable++;
            }
            progress?.Report(new ScrubProgress(stripe - firstStripe + 1, total, mismatches, checksumErrors));
        }
        return new ScrubReport(total, mismatches, checksumErrors, repaired, unrecoverable);
    }

    /// <summary>What scrubbing one stripe found: corrupt blocks, whether redundancy disagreed with data, and what repair did.</summary>
    private readonly record struct StripeScrub(int Bad, bool Mismatch, bool Repaired, bool Lost);

    private async ValueTask<StripeScrub> ScrubStripeAsync(StripeScratch s, long stripe, bool repair, CancellationToken cancellationToken)
    {
        ResetScratch(s, stripe);
        await ReadUsableSlotsAsync(s, stripe, cancellationToken).ConfigureAwait(false);
        var bad = VerifyUsableSlots(s, stripe);
        return Geometry.Level switch
        {
            RaidLevel.Raid0 => new StripeScrub(bad, false, false, bad > 0),
            RaidLevel.Raid1 => await ScrubMirrorAsync(s, stripe, bad, repair).ConfigureAwait(false),
            _ => await ScrubParityAsync(s, stripe, bad, repair).ConfigureAwait(false),
        };
    }

    /// <summary>RAID-1: compares the copies row by row where both verify, and with <paramref name="repair"/> makes them equal.</summary>
    private async ValueTask<StripeScrub> ScrubMirrorAsync(StripeScratch s, long stripe, int bad, bool repair)
    {
        var rows = _blocksPerChunk;
        var reference = FirstUsableFrom(s, 0);
        var mismatch = false;
        for (var m = 0; m < _memberCount && !mismatch; m++)
        {
            if (!s.Usable[m] || m == reference) continue;
            for (var r = 0; r < rows && !mismatch; r++)
                if (!s.Bad[m * rows + r] && !s.Bad[reference * rows + r] && !Rows(s.Buffer, m, r, r + 1).SequenceEqual(Rows(s.Buffer, reference, r, r + 1)))
                    mismatch = true;
        }
        if (!repair || (bad == 0 && !mismatch)) return new StripeScrub(bad, mismatch, false, false);
        try
        {
            if (mismatch)
            {
                // Copies disagree with good checksums on both sides (a torn write outside the
                // intent log's reach): make every copy equal the first one, as md's repair does.
                for (var m = 0; m < _memberCount; m++)
                    if (s.Usable[m] && m != reference)
                        for (var r = 0; r < rows; r++) s.Bad[m * rows + r] |= !s.Bad[reference * rows + r];
            }
            await RepairMirrorRowsAsync(s, stripe, 0, rows).ConfigureAwait(false);
            return new StripeScrub(bad, mismatch, true, false);
        }
        catch (VolumeDataLossException) { return new StripeScrub(bad, mismatch, false, true); }
    }

    /// <summary>RAID-5/6: checks parity on rows where every block verifies, and with <paramref name="repair"/> reconstructs corrupt blocks and regenerates disagreeing parity.</summary>
    private async ValueTask<StripeScrub> ScrubParityAsync(StripeScratch s, long stripe, int bad, bool repair)
    {
        var allUsable = true;
        for (var k = 0; k < _dataCount + _parityCount; k++) allUsable &= s.Usable[s.SlotMember[k]];
        var mismatch = allUsable && !ParityAgrees(s);
        if (!repair || (bad == 0 && !mismatch)) return new StripeScrub(bad, mismatch, false, false);
        try
        {
            if (bad > 0) ReconstructRows(s, stripe, 0, _blocksPerChunk, Need.All);
            if (mismatch)
            {
                // Data verified against checksums is trusted; parity is regenerated from it (md "repair").
                ComputeParityRows(s, 0, _blocksPerChunk);
                MarkParityRowsForRewrite(s);
            }
            await WriteRepairsAsync(s, stripe, 0, _blocksPerChunk).ConfigureAwait(false);
            return new StripeScrub(bad, mismatch, true, false);
        }
        catch (VolumeDataLossException) { return new StripeScrub(bad, mismatch, false, true); }
    }

    /// <summary>True when the parity of every row whose blocks all verify matches its data.</summary>
    private bool ParityAgrees(StripeScratch s)
    {
        var p = System.Buffers.ArrayPool<byte>.Shared.Rent(B * 2);
        try
        {
            Span<byte> pRow = p.AsSpan(0, B), qRow = p.AsSpan(B, B);
            for (var r = 0; r < _blocksPerChunk; r++)
            {
                if (BadMask(s, r) != 0) continue;
                for (var d = 0; d < _dataCount; d++) s.Data[d] = RowsMemory(s.Buffer, s.SlotMember[d], r, r + 1);
                if (_parityCount == 1) RaidMath.ComputeP(s.Data, pRow);
                else RaidMath.ComputePQ(s.Data, pRow, qRow);
                if (!pRow.SequenceEqual(Rows(s.Buffer, s.SlotMember[_dataCount], r, r + 1))) return false;
                if (_parityCount == 2 && !qRow.SequenceEqual(Rows(s.Buffer, s.SlotMember[_dataCount + 1], r, r + 1))) return false;
            }
            return true;
        }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(p); }
    }

    /// <summary>Marks every row of the usable parity members bad, so that <see cref="WriteRepairsAsync"/> rewrites them.</summary>
    private void MarkParityRowsForRewrite(StripeScratch s)
    {
        var pm = s.SlotMember[_dataCount];
        var qm = _parityCount == 2 ? s.SlotMember[_dataCount + 1] : -1;
        for (var r = 0; r < _blocksPerChunk; r++)
        {
            if (s.Usable[pm]) s.Bad[pm * _blocksPerChunk + r] = true;
            if (qm >= 0 && s.Usable[qm]) s.Bad[qm * _blocksPerChunk + r] = true;
        }
    }

    /// <summary>
    /// Write-hole recovery for one stripe marked in an intent bitmap: the stripe may hold a mix of
    /// old and new blocks, and blocks whose metadata did not land. Data blocks are taken as they are
    /// (any of them may be the unacknowledged write), their checksums recomputed, and parity (or the
    /// other mirror copies) rewritten to match.
    /// </summary>
    private async ValueTask ResyncStripeAsync(long stripe, CancellationToken cancellationToken)
    {
        using LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false);
        StripeScratch s = locked.Scratch;
        // A stripe with members missing cannot be resynced from its data; the partial parity log may still settle it.
        await RepairFromPartialParityAsync(stripe, cancellationToken).ConfigureAwait(false);
        ResetScratch(s, stripe);
        await ReadUsableSlotsAsync(s, stripe, cancellationToken).ConfigureAwait(false);
        VerifyUsableSlots(s, stripe);
        var rewrite = Geometry.Level switch
        {
            // Only checksums can disagree: a block landed without its metadata (or the reverse).
            RaidLevel.Raid0 => true,
            RaidLevel.Raid1 => ResyncMirrorRows(s),
            _ => ResyncParityRows(s),
        };
        if (rewrite) await WriteResyncedAsync(s, stripe).ConfigureAwait(false);
    }

    /// <summary>
    /// RAID-1 resync in the scratch: each row from the first copy whose checksum holds (else the first copy as it
    /// is, re-stamped), copied over the others, and every row of every usable copy marked for rewriting.
    /// </summary>
    /// <returns>False when no copy is usable (nothing to write).</returns>
    private bool ResyncMirrorRows(StripeScratch s)
    {
        var rows = _blocksPerChunk;
        var reference = FirstUsableFrom(s, 0);
        if (reference < 0) return false;
        for (var r = 0; r < rows; r++)
        {
            var source = -1;
            for (var m = 0; m < _memberCount && source < 0; m++)
                if (s.Usable[m] && !s.Bad[m * rows + r]) source = m;
            if (source < 0)
            {
                source = reference;
                Restamp(s.Buffer, source, r);
            }
            for (var m = 0; m < _memberCount; m++)
                if (s.Usable[m] && m != source) CopyRow(s, source, m, r);
        }
        for (var m = 0; m < _memberCount; m++)
            for (var r = 0; r < rows; r++) s.Bad[m * rows + r] = s.Usable[m];
        return true;
    }

    /// <summary>
    /// RAID-5/6 resync in the scratch: parity regenerated from the data as it is, each parity row stamped with the
    /// newest data timestamp of its row (as after a normal write), and the parity rows marked for rewriting unless
    /// every usable parity chunk and its metadata came out exactly as read. A dead writer's intent regions mark most
    /// of a busy volume, nearly all of it consistent: rewriting only what differs keeps the recovery's writes (page
    /// blob requests, under the survivors' writes) to the stripes it repairs.
    /// </summary>
    /// <returns>False when a data chunk is missing: it exists only through parity, which may be half-updated, so the
    /// stripe is left as it is (docs/WRITE-HOLE.md: the degraded write hole).</returns>
    private bool ResyncParityRows(StripeScratch s)
    {
        var rows = _blocksPerChunk;
        for (var d = 0; d < _dataCount; d++)
            if (!s.Usable[s.SlotMember[d]]) return false;
        var before = ArrayPool<byte>.Shared.Rent(_parityCount * _slotBytes);
        try
        {
            for (var k = 0; k < _parityCount; k++)
                s.Buffer.AsSpan(s.SlotMember[_dataCount + k] * _slotBytes, _slotBytes)
                    .CopyTo(before.AsSpan(k * _slotBytes, _slotBytes));
            StampParityRows(s);
            for (var k = 0; k < _parityCount; k++)
            {
                var m = s.SlotMember[_dataCount + k];
                if (!s.Usable[m]) continue;
                if (!s.Buffer.AsSpan(m * _slotBytes, _slotBytes).SequenceEqual(before.AsSpan(k * _slotBytes, _slotBytes)))
                {
                    MarkParityRowsForRewrite(s);
                    break;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(before);
        }
        return true;
    }

    /// <summary>Parity computed from the data in the scratch, and each parity row's metadata stamped.</summary>
    private void StampParityRows(StripeScratch s)
    {
        var rows = _blocksPerChunk;
        ComputeParityRows(s, 0, rows);
        for (var r = 0; r < rows; r++)
        {
            long ts = 0;
            var written = false;
            for (var d = 0; d < _dataCount; d++)
            {
                (var t, var sum) = OnDiskFormat.ReadEntry(Meta(s.Buffer, s.SlotMember[d]), r);
                written |= t != 0 || sum != 0 || s.Bad[s.SlotMember[d] * rows + r];
                ts = Math.Max(ts, t);
            }
            for (var k = _dataCount; k < _dataCount + _parityCount; k++)
            {
                var m = s.SlotMember[k];
                if (s.Usable[m]) OnDiskFormat.WriteEntry(Meta(s.Buffer, m), r, ts, written ? OnDiskFormat.BlockChecksum(Rows(s.Buffer, m, r, r + 1)) : 0);
            }
        }
    }

    /// <summary>
    /// Writes back every member with a changed block: data blocks whose checksum did not hold get their checksum
    /// recomputed, parity and mirror copies are rewritten whole.
    /// </summary>
    private async ValueTask WriteResyncedAsync(StripeScratch s, long stripe)
    {
        var rows = _blocksPerChunk;
        var n = 0;
        for (var m = 0; m < _memberCount; m++)
        {
            if (!s.Usable[m]) continue;
            var any = false;
            for (var r = 0; r < rows; r++)
            {
                if (!s.Bad[m * rows + r]) continue;
                any = true;
                if (Geometry.Level != RaidLevel.Raid1 && Layout.RoleOf(stripe, m) >= 0) Restamp(s.Buffer, m, r);
            }
            if (any) s.Tasks[n++] = WriteSlotAsync(s, m, stripe, 0, rows);
        }
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
    }
}
