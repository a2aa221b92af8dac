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
    public async ValueTask RebuildAsync(IProgress<RebuildProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckUsable();
        for (int m = 0; m < _memberCount; m++)
        {
            if (_states[m] != MemberState.Rebuilding) continue;
            long start = Volatile.Read(ref _cursors[m]);
            for (long stripe = start; stripe < StripeCount; stripe++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                await RebuildStripeAsync(m, stripe, cancellationToken).ConfigureAwait(false);
                if (_states[m] != MemberState.Rebuilding)
                    throw new VolumeDataLossException($"volume '{Name}': member {m} failed during its rebuild at stripe {stripe}: {_reasons[m]}.");
                var p = new RebuildProgress(m, stripe + 1, StripeCount);
                lock (_stateGate) _rebuild = p;
                if ((stripe + 1) % _options.RebuildCheckpointStripes == 0)
                {
                    await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
                    await WriteSuperblocksAsync(cancellationToken).ConfigureAwait(false);
                }
                progress?.Report(p);
            }
            await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
            lock (_stateGate)
            {
                if (_states[m] == MemberState.Rebuilding) _states[m] = MemberState.Active;
                _rebuild = null;
            }
            await WriteSuperblocksAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask RebuildStripeAsync(int target, long stripe, CancellationToken cancellationToken)
    {
        StripeScratch s = _scratchPool.Rent();
        SemaphoreSlim gate = StripeLock(stripe);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFailed();
            ResetScratch(s, stripe);
            if (Geometry.Level == RaidLevel.Raid1)
            {
                int n = 0;
                for (int m = 0; m < _memberCount; m++)
                    if (s.Usable[m]) s.Tasks[n++] = SlotIoAsync(m, false, stripe, 0, _blocksPerChunk, true, s.Buffer, cancellationToken);
                await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
                await RepairMirrorRowsAsync(s, stripe, 0, _blocksPerChunk, cancellationToken).ConfigureAwait(false);
                Buffer.BlockCopy(s.Buffer, s.SlotMember[0] * _slotBytes, s.Buffer, target * _slotBytes, _slotBytes);
            }
            else
            {
                // Target is not usable for this stripe yet, so it counts as missing in every row.
                await LoadAndReconstructAsync(s, stripe, 0, _blocksPerChunk, Need.All, cancellationToken).ConfigureAwait(false);
                StampRebuilt(s, stripe, target);
            }
            if (!await SlotIoAsync(target, true, stripe, 0, _blocksPerChunk, true, s.Buffer, CancellationToken.None).ConfigureAwait(false)) return;
            // Advance under the lock: writes to this stripe from now on include the new member.
            Volatile.Write(ref _cursors[target], stripe + 1);
        }
        finally
        {
            gate.Release();
            _scratchPool.Return(s);
        }
    }

    /// <summary>
    /// Metadata for a reconstructed chunk. A data block gets its row's parity timestamp (the newest
    /// write to the row, an upper bound on its own); a parity block gets the newest data timestamp
    /// of its row. Rows never written keep all-zero entries.
    /// </summary>
    private void StampRebuilt(StripeScratch s, long stripe, int target)
    {
        int targetRole = Layout.RoleOf(stripe, target);
        Span<byte> meta = Meta(s.Buffer, target);
        for (int r = 0; r < _blocksPerChunk; r++)
        {
            long ts = 0;
            bool written = false;
            for (int k = 0; k < _dataCount + _parityCount; k++)
            {
                int m = s.SlotMember[k];
                if (m == target || !s.Usable[m]) continue;
                bool sameKind = (k < _dataCount) == (targetRole >= 0);
                if (sameKind) continue;
                (long t, ulong sum) = OnDiskFormat.ReadEntry(Meta(s.Buffer, m), r);
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
    public async ValueTask<ScrubReport> ScrubAsync(bool repair, IProgress<ScrubProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckUsable();
        long mismatches = 0, checksumErrors = 0, repaired = 0, unrecoverable = 0;
        StripeScratch s = _scratchPool.Rent();
        try
        {
            for (long stripe = 0; stripe < StripeCount; stripe++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                SemaphoreSlim gate = StripeLock(stripe);
                await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    ThrowIfFailed();
                    (int bad, bool mismatch, bool fixedIt, bool lost) = await ScrubStripeAsync(s, stripe, repair, cancellationToken).ConfigureAwait(false);
                    checksumErrors += bad;
                    if (mismatch) mismatches++;
                    if (fixedIt) repaired++;
                    if (lost) unrecoverable++;
                }
                finally { gate.Release(); }
                progress?.Report(new ScrubProgress(stripe + 1, StripeCount, mismatches, checksumErrors));
            }
        }
        finally { _scratchPool.Return(s); }
        return new ScrubReport(StripeCount, mismatches, checksumErrors, repaired, unrecoverable);
    }

    private async ValueTask<(int Bad, bool Mismatch, bool Repaired, bool Lost)> ScrubStripeAsync(StripeScratch s, long stripe, bool repair, CancellationToken cancellationToken)
    {
        ResetScratch(s, stripe);
        int rows = _blocksPerChunk;
        int n = 0;
        for (int m = 0; m < _memberCount; m++)
            if (s.Usable[m]) s.Tasks[n++] = SlotIoAsync(m, false, stripe, 0, rows, true, s.Buffer, cancellationToken);
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
        int bad = 0;
        for (int m = 0; m < _memberCount; m++)
        {
            s.Usable[m] = s.Usable[m] && IsUsable(m, stripe);
            if (s.Usable[m]) bad += VerifyRows(s, m, 0, rows);
        }

        bool mismatch = false;
        switch (Geometry.Level)
        {
            case RaidLevel.Raid0:
                return (bad, false, false, bad > 0);
            case RaidLevel.Raid1:
            {
                int reference = FirstUsableFrom(s, 0);
                for (int m = 0; m < _memberCount && !mismatch; m++)
                {
                    if (!s.Usable[m] || m == reference) continue;
                    for (int r = 0; r < rows && !mismatch; r++)
                        if (!s.Bad[m * rows + r] && !s.Bad[reference * rows + r] && !Rows(s.Buffer, m, r, r + 1).SequenceEqual(Rows(s.Buffer, reference, r, r + 1)))
                            mismatch = true;
                }
                if (!repair || (bad == 0 && !mismatch)) return (bad, mismatch, false, false);
                try
                {
                    if (mismatch)
                    {
                        // Copies disagree with good checksums on both sides (a torn write outside the
                        // intent log's reach): make every copy equal the first one, as md's repair does.
                        for (int m = 0; m < _memberCount; m++)
                            if (s.Usable[m] && m != reference)
                                for (int r = 0; r < rows; r++) s.Bad[m * rows + r] |= !s.Bad[reference * rows + r];
                    }
                    await RepairMirrorRowsAsync(s, stripe, 0, rows, cancellationToken).ConfigureAwait(false);
                    return (bad, mismatch, true, false);
                }
                catch (VolumeDataLossException) { return (bad, mismatch, false, true); }
            }
        }

        int slots = _dataCount + _parityCount;
        bool allUsable = true;
        for (int k = 0; k < slots; k++)
        {
            s.Members[k] = s.Buffer.AsMemory(s.SlotMember[k] * _slotBytes, _chunk);
            allUsable &= s.Usable[s.SlotMember[k]];
        }
        // Parity check on rows where every block is present and verified.
        if (allUsable)
        {
            byte[] p = System.Buffers.ArrayPool<byte>.Shared.Rent(B * 2);
            try
            {
                for (int r = 0; r < rows && !mismatch; r++)
                {
                    if (BadMask(s, r) != 0) continue;
                    for (int d = 0; d < _dataCount; d++) s.Data[d] = RowsMemory(s.Buffer, s.SlotMember[d], r, r + 1);
                    Span<byte> pRow = p.AsSpan(0, B), qRow = p.AsSpan(B, B);
                    if (_parityCount == 1) RaidMath.ComputeP(s.Data, pRow);
                    else RaidMath.ComputePQ(s.Data, pRow, qRow);
                    mismatch |= !pRow.SequenceEqual(Rows(s.Buffer, s.SlotMember[_dataCount], r, r + 1));
                    if (_parityCount == 2) mismatch |= !qRow.SequenceEqual(Rows(s.Buffer, s.SlotMember[_dataCount + 1], r, r + 1));
                }
            }
            finally { System.Buffers.ArrayPool<byte>.Shared.Return(p); }
        }
        if (!repair || (bad == 0 && !mismatch)) return (bad, mismatch, false, false);

        try
        {
            if (bad > 0)
            {
                Span<int> missing = stackalloc int[2];
                int runStart = 0;
                ulong runMask = BadMask(s, 0);
                for (int r = 1; r <= rows; r++)
                {
                    ulong mask = r < rows ? BadMask(s, r) : ulong.MaxValue;
                    if (mask == runMask) continue;
                    ReconstructRun(s, stripe, runStart, r, runMask, Need.All, missing);
                    runStart = r;
                    runMask = mask;
                }
            }
            if (mismatch)
            {
                // Data verified against checksums is trusted; parity is regenerated from it (md "repair").
                int pm = s.SlotMember[_dataCount];
                int qm = _parityCount == 2 ? s.SlotMember[_dataCount + 1] : -1;
                for (int d = 0; d < _dataCount; d++) s.Data[d] = RowsMemory(s.Buffer, s.SlotMember[d], 0, rows);
                if (_parityCount == 1) RaidMath.ComputeP(s.Data, Rows(s.Buffer, pm, 0, rows));
                else RaidMath.ComputePQ(s.Data, Rows(s.Buffer, pm, 0, rows), Rows(s.Buffer, qm, 0, rows));
                MarkParityRowsForRewrite(s, pm, qm);
            }
            await WriteRepairsAsync(s, stripe, 0, rows, cancellationToken).ConfigureAwait(false);
            return (bad, mismatch, true, false);
        }
        catch (VolumeDataLossException) { return (bad, mismatch, false, true); }
    }

    private void MarkParityRowsForRewrite(StripeScratch s, int pm, int qm)
    {
        for (int r = 0; r < _blocksPerChunk; r++)
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
        StripeScratch s = _scratchPool.Rent();
        SemaphoreSlim gate = StripeLock(stripe);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ResetScratch(s, stripe);
            int rows = _blocksPerChunk;
            int n = 0;
            for (int m = 0; m < _memberCount; m++)
                if (s.Usable[m]) s.Tasks[n++] = SlotIoAsync(m, false, stripe, 0, rows, true, s.Buffer, cancellationToken);
            await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
            for (int m = 0; m < _memberCount; m++)
            {
                s.Usable[m] = s.Usable[m] && IsUsable(m, stripe);
                if (s.Usable[m]) VerifyRows(s, m, 0, rows);
            }
            switch (Geometry.Level)
            {
                case RaidLevel.Raid0:
                    // Only checksums can disagree: a block landed without its metadata (or the reverse).
                    break;
                case RaidLevel.Raid1:
                {
                    // Each row from the first copy whose checksum holds (else the first copy as is); copies made equal.
                    int reference = FirstUsableFrom(s, 0);
                    if (reference < 0) return;
                    for (int r = 0; r < rows; r++)
                    {
                        int source = -1;
                        for (int m = 0; m < _memberCount && source < 0; m++)
                            if (s.Usable[m] && !s.Bad[m * rows + r]) source = m;
                        if (source < 0)
                        {
                            source = reference;
                            Restamp(s.Buffer, source, r);
                        }
                        for (int m = 0; m < _memberCount; m++)
                        {
                            if (!s.Usable[m] || m == source) continue;
                            Rows(s.Buffer, source, r, r + 1).CopyTo(Rows(s.Buffer, m, r, r + 1));
                            Meta(s.Buffer, source).Slice(r * OnDiskFormat.MetadataEntryBytes, OnDiskFormat.MetadataEntryBytes)
                                .CopyTo(Meta(s.Buffer, m)[(r * OnDiskFormat.MetadataEntryBytes)..]);
                        }
                    }
                    for (int m = 0; m < _memberCount; m++)
                        for (int r = 0; r < rows; r++) s.Bad[m * rows + r] = s.Usable[m];
                    break;
                }
                default:
                {
                    int pm = s.SlotMember[_dataCount];
                    int qm = _parityCount == 2 ? s.SlotMember[_dataCount + 1] : -1;
                    for (int d = 0; d < _dataCount; d++)
                        if (!s.Usable[s.SlotMember[d]])
                        {
                            // A data chunk is missing: it exists only through parity, which may be half-updated.
                            // Leave the stripe as it is (docs/WRITE-HOLE.md: the degraded write hole).
                            return;
                        }
                    for (int d = 0; d < _dataCount; d++) s.Data[d] = RowsMemory(s.Buffer, s.SlotMember[d], 0, rows);
                    if (_parityCount == 1) RaidMath.ComputeP(s.Data, Rows(s.Buffer, pm, 0, rows));
                    else RaidMath.ComputePQ(s.Data, Rows(s.Buffer, pm, 0, rows), Rows(s.Buffer, qm, 0, rows));
                    // Parity rows carry the newest data timestamp of their row, as after a normal write.
                    for (int r = 0; r < rows; r++)
                    {
                        long ts = 0;
                        bool written = false;
                        for (int d = 0; d < _dataCount; d++)
                        {
                            (long t, ulong sum) = OnDiskFormat.ReadEntry(Meta(s.Buffer, s.SlotMember[d]), r);
                            written |= t != 0 || sum != 0 || s.Bad[s.SlotMember[d] * rows + r];
                            ts = Math.Max(ts, t);
                        }
                        foreach (int m in (ReadOnlySpan<int>)[pm, qm])
                            if (m >= 0 && s.Usable[m])
                                OnDiskFormat.WriteEntry(Meta(s.Buffer, m), r, ts, written ? OnDiskFormat.BlockChecksum(Rows(s.Buffer, m, r, r + 1)) : 0);
                    }
                    MarkParityRowsForRewrite(s, pm, qm);
                    break;
                }
            }
            // Write back every member with a changed block: data blocks whose checksum did not hold get
            // their checksum recomputed (Restamp in WriteRepairs), parity and copies get rewritten.
            n = 0;
            for (int m = 0; m < _memberCount; m++)
            {
                if (!s.Usable[m]) continue;
                bool any = false;
                for (int r = 0; r < rows; r++)
                {
                    if (!s.Bad[m * rows + r]) continue;
                    any = true;
                    if (Geometry.Level != RaidLevel.Raid1 && Layout.RoleOf(stripe, m) >= 0) Restamp(s.Buffer, m, r);
                }
                if (any) s.Tasks[n++] = SlotIoAsync(m, true, stripe, 0, rows, true, s.Buffer, CancellationToken.None);
            }
            await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
        }
        finally
        {
            gate.Release();
            _scratchPool.Return(s);
        }
    }
}
