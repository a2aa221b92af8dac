using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Parity;

namespace Cloud.Storage.Volumes;

// Reads, writes, trims and timestamps.
public sealed partial class RaidVolume
{
    /// <inheritdoc />
    public ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        if (!IsBlockAligned(offsetBytes, destination.Length))
            return ReadSectorsAsync(offsetBytes, destination, cancellationToken);
        CheckIo(offsetBytes, destination.Length, nameof(destination));
        // Fast path for the common small read (one stripe): no request-level state machine or window.
        var stripe = offsetBytes / Geometry.StripeDataBytes;
        var inStripe = (int)(offsetBytes - stripe * Geometry.StripeDataBytes);
        if (inStripe + destination.Length <= Geometry.StripeDataBytes)
            return destination.Length == 0
                ? ValueTask.CompletedTask
                : ReadStripeAsync(stripe, inStripe, destination, cancellationToken);
        return ReadRunAsync(offsetBytes, destination, cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default) =>
        IsBlockAligned(offsetBytes, source.Length)
            ? WriteAsync(offsetBytes, source, 0, forceUnitAccess, cancellationToken)
            : WriteSectorsAsync(offsetBytes, source, forceUnitAccess, cancellationToken);

    /// <summary>
    /// Writes <paramref name="source"/> and stores <paramref name="writeTimestamp"/> in each written
    /// block's metadata beside its checksum (0 means "no timestamp").
    /// </summary>
    public ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        long writeTimestamp,
        bool forceUnitAccess,
        CancellationToken cancellationToken = default)
    {
        CheckIo(offsetBytes, source.Length, nameof(source));
        if (writeTimestamp < 0)
            throw new ArgumentOutOfRangeException(
                nameof(writeTimestamp), writeTimestamp, $"allowed: 0..{long.MaxValue} (0 = no timestamp).");
        if (IsRunWrite(offsetBytes, source.Length))
            return WriteRunAsync(offsetBytes, source, writeTimestamp, forceUnitAccess, cancellationToken);
        return WriteStripeByStripeAsync(offsetBytes, source, writeTimestamp, forceUnitAccess, cancellationToken);
    }

    /// <summary>
    /// Writes zeroes over the sector-aligned range (a trimmed range reads back as zeroes); the sectors of a block it
    /// covers only in part are zeroed by rewriting the block.
    /// </summary>
    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        IsBlockAligned(offsetBytes, lengthBytes)
            ? TrimAsync(offsetBytes, lengthBytes, 0, cancellationToken)
            : TrimSectorsAsync(offsetBytes, lengthBytes, cancellationToken);

    /// <summary>
    /// Trims like <see cref="TrimAsync(long, long, CancellationToken)"/>, stamping the zeroed blocks with
    /// <paramref name="writeTimestamp"/>.
    /// </summary>
    public async ValueTask TrimAsync(
        long offsetBytes,
        long lengthBytes,
        long writeTimestamp,
        CancellationToken cancellationToken = default)
    {
        if (writeTimestamp < 0)
            throw new ArgumentOutOfRangeException(
                nameof(writeTimestamp), writeTimestamp, $"allowed: 0..{long.MaxValue} (0 = no timestamp).");
        CheckRange(offsetBytes, lengthBytes);
        var zeros = ArrayPool<byte>.Shared.Rent(Math.Min(MaxIoSizeBytes, 4 << 20));
        try
        {
            Array.Clear(zeros);
            var step = zeros.Length / B * B;
            for (long done = 0; done < lengthBytes;)
            {
                var n = (int)Math.Min(step, lengthBytes - done);
                await WriteStripeByStripeAsync(
                    offsetBytes + done,
                    zeros.AsMemory(0, n),
                    writeTimestamp,
                    fua: false,
                    cancellationToken).ConfigureAwait(false);
                done += n;
            }
        }
        finally { ArrayPool<byte>.Shared.Return(zeros); }
    }

    /// <summary>The first and last stripe the range touches.</summary>
    public (long First, long Last) StripeRange(long offsetBytes, long lengthBytes)
        => Layout.StripeRange(offsetBytes, lengthBytes);

    /// <summary>
    /// Returns the write timestamp stored for each block of the range (one per 4 KiB block; 0 = never
    /// written with a timestamp). For a block on a missing member the row's parity timestamp is
    /// returned: the newest write to any block of that row, so an upper bound.
    /// </summary>
    public ValueTask ReadBlockTimestampsAsync(
        long offsetBytes,
        Memory<long> timestamps,
        CancellationToken cancellationToken = default) =>
        ReadBlockTimestampsAsync(offsetBytes, timestamps, boundMissing: true, cancellationToken);

    /// <summary>
    /// <see cref="ReadBlockTimestampsAsync(long, Memory{long}, CancellationToken)"/>; with
    /// <paramref name="boundMissing"/> false, a block on a missing member reads 0 (unknown) rather than its row's parity
    /// timestamp, which may come from another block of the row: a caller that knows every newer version by other means
    /// must not take that bound for the block's own and drop an older version of it that was never written.
    /// </summary>
    public async ValueTask ReadBlockTimestampsAsync(
        long offsetBytes,
        Memory<long> timestamps,
        bool boundMissing,
        CancellationToken cancellationToken = default)
    {
        if (timestamps.Length == 0 || (long)timestamps.Length * B > MaxIoSizeBytes)
            throw new ArgumentOutOfRangeException(
                nameof(timestamps), timestamps.Length, $"allowed: 1..{MaxIoSizeBytes / B} blocks.");
        CheckIo(offsetBytes, timestamps.Length * B, nameof(timestamps));
        var end = offsetBytes + (long)timestamps.Length * B;
        for (var pos = offsetBytes; pos < end;)
        {
            var stripe = pos / Geometry.StripeDataBytes;
            var stripeEnd = Math.Min(end, (stripe + 1) * Geometry.StripeDataBytes);
            using (LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false))
            {
                StripeScratch s = locked.Scratch;
                ResetScratch(s, stripe);
                ulong read = 0;
                // A member whose read fails is failed, and its blocks then need the parity members' metadata for the
                // bound: a second round reads what the first did not.
                for (var round = 0; round < 2; round++)
                {
                    var needed = TimestampMembers(s, stripe, pos, stripeEnd, boundMissing) & ~read;
                    if (needed == 0) break;
                    var n = 0;
                    for (var m = 0; m < _memberCount; m++)
                        if ((needed & (1UL << m)) != 0) s.Tasks[n++] = ReadMetadataAsync(s, m, stripe, cancellationToken);
                    read |= needed;
                    await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
                    if (!boundMissing) break;
                }
                for (var p = pos; p < stripeEnd; p += B)
                    timestamps.Span[(int)((p - offsetBytes) / B)] = BlockTimestamp(s, stripe, p, boundMissing);
            }
            pos = stripeEnd;
        }
    }

    /// <summary>
    /// The members (a bit each) whose metadata <see cref="BlockTimestamp"/> reads for the blocks of
    /// [<paramref name="from"/>, <paramref name="to"/>) in <paramref name="stripe"/>: every usable mirror of RAID-1; else
    /// each block's own member, and the parity members for a block whose member is missing when the bound is asked
    /// for. A 4 KiB write's disk check reads one member, not the whole stripe (a request per member on page blobs).
    /// </summary>
    private ulong TimestampMembers(StripeScratch s, long stripe, long from, long to, bool boundMissing)
    {
        ulong needed = 0;
        if (Geometry.Level == RaidLevel.Raid1)
        {
            for (var m = 0; m < _memberCount; m++)
                if (s.Usable[m]) needed |= 1UL << m;
            return needed;
        }
        for (var p = from; p < to; p += B)
        {
            var member = Layout.Locate(p).Member;
            if (s.Usable[member] && IsUsable(member, stripe)) needed |= 1UL << member;
            else if (boundMissing)
            {
                for (var k = _dataCount; k < _dataCount + _parityCount; k++)
                {
                    var pm = Layout.MemberAtLogicalSlot(stripe, k);
                    if (s.Usable[pm]) needed |= 1UL << pm;
                }
            }
        }
        return needed;
    }

    /// <summary>
    /// The timestamp stored for the block at volume offset <paramref name="offsetBytes"/>, from the metadata sectors in
    /// the scratch.
    /// </summary>
    private long BlockTimestamp(StripeScratch s, long stripe, long offsetBytes, bool boundMissing)
    {
        ChunkAddress a = Layout.Locate(offsetBytes);
        var row = a.OffsetInChunkBytes / B;
        long ts = 0;
        if (Geometry.Level == RaidLevel.Raid1)
        {
            for (var m = 0; m < _memberCount; m++)
                if (s.Usable[m] && IsUsable(m, stripe))
                    ts = Math.Max(ts, OnDiskFormat.ReadEntry(Meta(s.Buffer, m), row).Timestamp);
            return ts;
        }
        if (s.Usable[a.Member] && IsUsable(a.Member, stripe))
            return OnDiskFormat.ReadEntry(Meta(s.Buffer, a.Member), row).Timestamp;
        if (!boundMissing) return 0;
        for (var k = _dataCount; k < _dataCount + _parityCount; k++)
        {
            var pm = Layout.MemberAtLogicalSlot(stripe, k);
            if (s.Usable[pm] && IsUsable(pm, stripe))
                ts = Math.Max(ts, OnDiskFormat.ReadEntry(Meta(s.Buffer, pm), row).Timestamp);
        }
        if (ts == 0 && _parityCount == 0)
            throw new VolumeDataLossException(
                $"volume '{Name}': member {a.Member} holding offset {offsetBytes} is lost.");
        return ts;
    }

    private void CheckIo(long offsetBytes, int lengthBytes, string lengthName)
    {
        CheckUsable();
        if (lengthBytes < 1 || lengthBytes > MaxIoSizeBytes || lengthBytes % B != 0)
            throw new ArgumentOutOfRangeException(
                lengthName, lengthBytes, $"length must be a multiple of {B} in {B}..{MaxIoSizeBytes} bytes.");
        CheckRange(offsetBytes, lengthBytes);
    }

    private void CheckRange(long offsetBytes, long lengthBytes)
    {
        CheckUsable();
        if (offsetBytes < 0 || offsetBytes % B != 0 || offsetBytes >= CapacityBytes)
            throw new ArgumentOutOfRangeException(
                nameof(offsetBytes), offsetBytes, $"offset must be a multiple of {B} in 0..{CapacityBytes - B}.");
        if (lengthBytes < 1 || lengthBytes % B != 0 || lengthBytes > CapacityBytes - offsetBytes)
            throw new ArgumentOutOfRangeException(
                nameof(lengthBytes),
                lengthBytes,
                $"length must be a multiple of {B} in {B}..{CapacityBytes - offsetBytes} bytes at offset {offsetBytes}.");
    }

    /// <summary>
    /// Reads a request stripe by stripe, up to <see cref="RaidVolumeOptions.MaxStripesInFlightPerRequest"/> stripes at
    /// once.
    /// </summary>
    private ValueTask ReadStripeByStripeAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken) =>
        RunStripesAsync(write: false, offsetBytes, destination, default, 0, fua: false, cancellationToken);

    /// <summary>
    /// Writes a request stripe by stripe, up to <see cref="RaidVolumeOptions.MaxStripesInFlightPerRequest"/> stripes at
    /// once, then flushes for FUA.
    /// </summary>
    private ValueTask WriteStripeByStripeAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        long timestamp,
        bool fua,
        CancellationToken cancellationToken) =>
        RunStripesAsync(write: true, offsetBytes, default, source, timestamp, fua, cancellationToken);

    /// <summary>
    /// Splits a request by stripe and runs up to MaxStripesInFlightPerRequest stripes at once; callers use the named
    /// forms above.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RunStripesAsync(
        bool write,
        long offsetBytes,
        Memory<byte> destination,
        ReadOnlyMemory<byte> source,
        long timestamp,
        bool fua,
        CancellationToken cancellationToken)
    {
        var length = write ? source.Length : destination.Length;
        var window = _options.MaxStripesInFlightPerRequest;
        ValueTask[] pending = ArrayPool<ValueTask>.Shared.Rent(window);
        var n = 0;
        Exception? error = null;
        try
        {
            var stripeData = Geometry.StripeDataBytes;
            for (var done = 0; done < length;)
            {
                var pos = offsetBytes + done;
                var stripe = pos / stripeData;
                var inStripe = (int)(pos - stripe * stripeData);
                var len = Math.Min(length - done, stripeData - inStripe);
                pending[n++] = write
                    ? WriteStripeAsync(stripe, inStripe, source.Slice(done, len), timestamp, cancellationToken)
                    : ReadStripeAsync(stripe, inStripe, destination.Slice(done, len), cancellationToken);
                done += len;
                if (n == window || done == length)
                {
                    for (var i = 0; i < n; i++)
                    {
                        try { await pending[i].ConfigureAwait(false); }
                        catch (Exception e) { error ??= e; }
                        pending[i] = default;
                    }
                    n = 0;
                    if (error is not null) break;
                }
            }
        }
        finally { ArrayPool<ValueTask>.Shared.Return(pending); }
        if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        if (write && fua) await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Fills First/End with each data chunk's dirty (or wanted) rows; returns the union [r0, r1).</summary>
    private (int R0, int R1) ChunkRanges(StripeScratch s, int inStripe, int length)
    {
        Debug.Assert(
            inStripe >= 0 && length > 0 && inStripe + length <= Geometry.StripeDataBytes,
            "the range is not inside one stripe");
        Debug.Assert(inStripe % B == 0 && length % B == 0, "the range is not block-aligned");
        int r0 = int.MaxValue, r1 = 0;
        for (var d = 0; d < _dataCount; d++)
        {
            var chunkStart = d * _chunk;
            int a = Math.Max(inStripe, chunkStart), b = Math.Min(inStripe + length, chunkStart + _chunk);
            if (a < b)
            {
                s.First[d] = (a - chunkStart) / B;
                s.End[d] = (b - chunkStart) / B;
                r0 = Math.Min(r0, s.First[d]);
                r1 = Math.Max(r1, s.End[d]);
            }
            else s.First[d] = s.End[d] = 0;
        }
        Debug.Assert(
            0 <= r0 && r0 < r1 && r1 <= _blocksPerChunk, "the union of the chunks' rows is empty or out of order");
        return (r0, r1);
    }

    // ----- reads -----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadStripeAsync(
        long stripe,
        int inStripe,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        // Optimistic: no lock. Anything odd (a missing member, a checksum mismatch that may be a write in
        // flight) is settled under the stripe lock.
        StripeScratch fast = _scratchPool.Rent();
        try
        {
            if (await TryReadFastAsync(fast, stripe, inStripe, destination, cancellationToken).ConfigureAwait(false))
                return;
        }
        finally { _scratchPool.Return(fast); }
        using LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed();
        await ReadSlowAsync(locked.Scratch, stripe, inStripe, destination, cancellationToken).ConfigureAwait(false);
    }

    private int ReadCopyMember(long stripe) => Geometry.Level == RaidLevel.Raid1 ? (int)(stripe % _memberCount) : -1;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> TryReadFastAsync(
        StripeScratch s,
        long stripe,
        int inStripe,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        ResetScratch(s, stripe);
        ChunkRanges(s, inStripe, destination.Length);
        var n = 0;
        var slot = Layout.MemberOffsetBytes(stripe, 0);
        var preferred = ReadCopyMember(stripe);
        for (var d = 0; d < _dataCount; d++)
        {
            if (s.First[d] == s.End[d]) continue;
            var m = preferred >= 0 ? FirstUsableFrom(s, preferred) : Layout.DataMember(stripe, d);
            if (m < 0 || !s.Usable[m]) return await DrainFalse(s, n).ConfigureAwait(false);
            s.ReadFrom[d] = m;
            var destOffset = d * _chunk + s.First[d] * B - inStripe;
            s.Tasks[n++] = MemberReadAsync(
                m,
                slot + s.First[d] * B,
                destination.Slice(destOffset, (s.End[d] - s.First[d]) * B),
                cancellationToken);
            s.Tasks[n++] = MemberReadAsync(
                m, slot + _chunk, s.Buffer.AsMemory(m * _slotBytes + _chunk, _metaBytes), cancellationToken);
        }
        if (!await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false)) return false;
        for (var d = 0; d < _dataCount; d++)
        {
            if (s.First[d] == s.End[d]) continue;
            ReadOnlySpan<byte> meta = Meta(s.Buffer, s.ReadFrom[d]);
            for (var r = s.First[d]; r < s.End[d]; r++)
                if (!OnDiskFormat.Verify(destination.Span.Slice(d * _chunk + r * B - inStripe, B), meta, r))
                    return false;
        }
        return true;
    }

    private static async ValueTask<bool> DrainFalse(StripeScratch s, int n)
    {
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
        return false;
    }

    private int FirstUsableFrom(StripeScratch s, int start)
    {
        for (var i = 0; i < _memberCount; i++)
        {
            var m = (start + i) % _memberCount;
            if (s.Usable[m]) return m;
        }
        return -1;
    }

    private async ValueTask ReadSlowAsync(
        StripeScratch s,
        long stripe,
        int inStripe,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        ResetScratch(s, stripe);
        (var r0, var r1) = ChunkRanges(s, inStripe, destination.Length);
        switch (Geometry.Level)
        {
            case RaidLevel.Raid0:
            {
                var n = 0;
                for (var d = 0; d < _dataCount; d++)
                    if (s.First[d] < s.End[d])
                        s.Tasks[n++] = ReadSlotAsync(s, d, stripe, s.First[d], s.End[d], cancellationToken);
                if (!await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false)) ThrowIfFailed();
                for (var d = 0; d < _dataCount; d++)
                    if (s.First[d] < s.End[d] && VerifyRows(s, d, s.First[d], s.End[d]) > 0)
                        throw new VolumeDataLossException(
                            $"volume '{Name}' stripe {stripe}: checksum mismatch on member {d} ({_devices[d]?.Name}); RAID-0 has no redundancy to repair it.");
                break;
            }
            case RaidLevel.Raid1:
            {
                var n = 0;
                for (var m = 0; m < _memberCount; m++)
                    if (s.Usable[m]) s.Tasks[n++] = ReadSlotAsync(s, m, stripe, r0, r1, cancellationToken);
                await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
                await RepairMirrorRowsAsync(s, stripe, r0, r1, rewrite: _options.RepairOnRead).ConfigureAwait(false);
                break;
            }
            default:
            {
                var corrupt = await LoadAndReconstructAsync(
                    s, stripe, r0, r1, Need.ReadRanges, cancellationToken).ConfigureAwait(false);
                if (corrupt && _options.RepairOnRead) await WriteRepairsAsync(s, stripe, r0, r1).ConfigureAwait(false);
                break;
            }
        }
        for (var d = 0; d < _dataCount; d++)
        {
            if (s.First[d] == s.End[d]) continue;
            var m = Geometry.Level == RaidLevel.Raid1 ? s.SlotMember[0] : s.SlotMember[d];
            Rows(
                s.Buffer, m, s.First[d], s.End[d]).CopyTo(destination.Span[(d * _chunk + s.First[d] * B - inStripe)..]);
        }
    }

    /// <summary>
    /// RAID-1: for each row, finds a copy that verifies, copies it into every image whose block is
    /// bad, rewrites those on disk unless <paramref name="rewrite"/> is false (a read with repair-on-read
    /// off), and leaves SlotMember[0] naming a member whose image is now right.
    /// </summary>
    private async ValueTask RepairMirrorRowsAsync(StripeScratch s, long stripe, int r0, int r1, bool rewrite = true)
    {
        var good = -1;
        for (var m = 0; m < _memberCount; m++)
        {
            s.Usable[m] = s.Usable[m] && IsUsable(m, stripe);
            if (s.Usable[m]) VerifyRows(s, m, r0, r1);
        }
        for (var m = 0; m < _memberCount; m++) s.WriteFirst[m] = -1;
        for (var r = r0; r < r1; r++)
        {
            var source = -1;
            for (var m = 0; m < _memberCount && source < 0; m++)
                if (s.Usable[m] && !s.Bad[m * _blocksPerChunk + r]) source = m;
            if (source < 0)
                throw new VolumeDataLossException(
                    $"volume '{Name}' stripe {stripe} block row {r}: no mirror copy passes its checksum.");
            good = source;
            for (var m = 0; m < _memberCount; m++)
            {
                if (!s.Usable[m] || !s.Bad[m * _blocksPerChunk + r]) continue;
                CopyRow(s, source, m, r);
                s.Bad[m * _blocksPerChunk + r] = false;
                if (s.WriteFirst[m] < 0) s.WriteFirst[m] = r;
                s.WriteEnd[m] = r + 1;
            }
        }
        var n = 0;
        for (var m = 0; m < _memberCount && rewrite; m++)
            if (s.WriteFirst[m] >= 0) s.Tasks[n++] = WriteSlotAsync(s, m, stripe, s.WriteFirst[m], s.WriteEnd[m]);
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
        s.SlotMember[0] = good;
    }

    /// <summary>
    /// RAID-5/6: rewrites the blocks that were corrupt on usable members, now reconstructed in the images.
    /// </summary>
    private async ValueTask WriteRepairsAsync(StripeScratch s, long stripe, int r0, int r1)
    {
        var n = 0;
        for (var m = 0; m < _memberCount; m++)
        {
            if (!s.Usable[m]) continue;
            int first = -1, end = -1;
            for (var r = r0; r < r1; r++)
            {
                if (!s.Bad[m * _blocksPerChunk + r]) continue;
                Restamp(s.Buffer, m, r);
                if (first < 0) first = r;
                end = r + 1;
            }
            if (first >= 0) s.Tasks[n++] = WriteSlotAsync(s, m, stripe, first, end);
        }
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
    }

    // ----- writes -----

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteStripeAsync(
        long stripe,
        int inStripe,
        ReadOnlyMemory<byte> source,
        long timestamp,
        CancellationToken cancellationToken)
    {
        using LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false);
        await WriteLockedStripeAsync(locked.Scratch, stripe, inStripe, source, timestamp, cancellationToken)
            .ConfigureAwait(false);
    }

    /// <summary>
    /// Writes whole blocks within one stripe; the caller holds the stripe's lock and <paramref name="s"/> is its
    /// scratch (a sub-block write reads the block first under the same lock).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteLockedStripeAsync(
        StripeScratch s,
        long stripe,
        int inStripe,
        ReadOnlyMemory<byte> source,
        long timestamp,
        CancellationToken cancellationToken)
    {
        AssertStripeLocked(stripe);
        ThrowIfFailed();
        await _intent.BeginAsync(stripe, cancellationToken).ConfigureAwait(false);
        try
        {
            await MarkIfAwayAsync(stripe, cancellationToken).ConfigureAwait(false);
            ResetScratch(s, stripe);
            if (Geometry.Level is RaidLevel.Raid0 or RaidLevel.Raid1)
                await WriteStripeNoParityAsync(
                    s, stripe, inStripe, source, timestamp, cancellationToken).ConfigureAwait(false);
            else
                await WriteStripeParityAsync(
                    s, stripe, inStripe, source, timestamp, cancellationToken).ConfigureAwait(false);
        }
        finally { _intent.End(stripe); }
        ThrowIfFailed();
        // A member that went away during the write missed it: recorded before the write is acknowledged.
        await MarkIfAwayAsync(stripe, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask WriteStripeNoParityAsync(
        StripeScratch s,
        long stripe,
        int inStripe,
        ReadOnlyMemory<byte> source,
        long timestamp,
        CancellationToken cancellationToken)
    {
        ChunkRanges(s, inStripe, source.Length);
        // Targets: RAID-0 writes data chunk d to member d; RAID-1 writes the one chunk to every usable member.
        var targets = Geometry.Level == RaidLevel.Raid0 ? _dataCount : _memberCount;
        var n = 0;
        for (var t = 0; t < targets; t++)
        {
            var d = Geometry.Level == RaidLevel.Raid0 ? t : 0;
            if (s.First[d] == s.End[d] || !s.Usable[t]) continue;
            // The metadata sector is read only when some of its entries are not being rewritten.
            if (s.First[d] > 0 || s.End[d] < _blocksPerChunk)
                s.Tasks[n++] = ReadMetadataAsync(s, t, stripe, cancellationToken);
        }
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
        n = 0;
        for (var t = 0; t < targets; t++)
        {
            var d = Geometry.Level == RaidLevel.Raid0 ? t : 0;
            if (s.First[d] == s.End[d] || !IsUsable(t, stripe)) continue;
            source.Span.Slice(
                d * _chunk + s.First[d] * B - inStripe,
                (s.End[d] - s.First[d]) * B).CopyTo(Rows(s.Buffer, t, s.First[d], s.End[d]));
            Stamp(s.Buffer, t, s.First[d], s.End[d], timestamp);
            s.Tasks[n++] = WriteSlotAsync(s, t, stripe, s.First[d], s.End[d]);
        }
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
    }

    private async ValueTask WriteStripeParityAsync(
        StripeScratch s,
        long stripe,
        int inStripe,
        ReadOnlyMemory<byte> source,
        long timestamp,
        CancellationToken cancellationToken)
    {
        (var r0, var r1) = ChunkRanges(s, inStripe, source.Length);
        var slots = _dataCount + _parityCount;
        var allUsable = true;
        for (var k = 0; k < slots; k++) allUsable &= s.Usable[s.SlotMember[k]];
        WriteStrategy strategy = allUsable
            ? WritePlanner.Plan(s.First.AsSpan(0, _dataCount), s.End.AsSpan(0, _dataCount), _parityCount).Strategy
            : WriteStrategy.LoadAndReconstruct;
        var corrupt = false;
        if (strategy != WriteStrategy.LoadAndReconstruct
            && !await TryPlannedReadsAsync(s, stripe, strategy, r0, r1, cancellationToken).ConfigureAwait(false))
        {
            ResetScratch(s, stripe);
            strategy = WriteStrategy.LoadAndReconstruct;
        }
        if (strategy == WriteStrategy.LoadAndReconstruct)
            corrupt = await LoadAndReconstructAsync(
                s, stripe, r0, r1, Need.KeepOutsideRanges, cancellationToken).ConfigureAwait(false);

        var pm = s.SlotMember[_dataCount];
        var qm = _parityCount == 2 ? s.SlotMember[_dataCount + 1] : -1;
        if (strategy == WriteStrategy.FullStripe && !corrupt && CoversRowsEvenly(s, r0, r1))
        {
            await WriteFullStripeFromSourceAsync(s, stripe, inStripe, source, timestamp, r0, r1).ConfigureAwait(false);
            return;
        }
        if (strategy == WriteStrategy.ReadModifyWrite)
        {
            for (var d = 0; d < _dataCount; d++)
            {
                if (s.First[d] == s.End[d]) continue;
                ReadOnlySpan<byte> newRows = source.Span.Slice(
                    d * _chunk + s.First[d] * B - inStripe, (s.End[d] - s.First[d]) * B);
                Span<byte> oldRows = Rows(s.Buffer, s.SlotMember[d], s.First[d], s.End[d]);
                RaidMath.ApplyDelta(
                    d,
                    oldRows,
                    newRows,
                    Rows(s.Buffer, pm, s.First[d], s.End[d]),
                    qm >= 0 ? Rows(s.Buffer, qm, s.First[d], s.End[d]) : Span<byte>.Empty);
                newRows.CopyTo(oldRows);
            }
        }
        else
        {
            for (var d = 0; d < _dataCount; d++)
            {
                if (s.First[d] == s.End[d]) continue;
                source.Span.Slice(
                    d * _chunk + s.First[d] * B - inStripe,
                    (s.End[d] - s.First[d]) * B).CopyTo(Rows(s.Buffer, s.SlotMember[d], s.First[d], s.End[d]));
            }
            ComputeParityRows(s, r0, r1);
        }

        // A write that leaves some data rows of [r0, r1) as they are first logs their parity, when the volume keeps the
        // log: a writer dying with members of this stripe must not take those rows with it.
        (long P, long Q) logged = (-1, -1);
        if (_pplSlotBytes > 0 && timestamp > 0 && !CoversRowsEvenly(s, r0, r1) && NeedsPartialParity(s, stripe, r0, r1))
            logged = await WritePartialParityAsync(s, stripe, r0, r1, timestamp, cancellationToken).ConfigureAwait(false);
        try { await WriteStripeRowsAsync(s, stripe, r0, r1, timestamp, corrupt).ConfigureAwait(false); }
        finally { GivePartialParity(s, logged); }
    }

    /// <summary>Stamps and writes the dirty data rows, parity rows [r0, r1), and repaired blocks elsewhere.</summary>
    private async ValueTask WriteStripeRowsAsync(StripeScratch s, long stripe, int r0, int r1, long timestamp, bool corrupt)
    {
        var slots = _dataCount + _parityCount;
        var n = 0;
        for (var k = 0; k < slots; k++)
        {
            var m = s.SlotMember[k];
            if (!s.Usable[m] || !IsUsable(m, stripe)) continue;
            int first, end;
            if (k < _dataCount)
            {
                first = s.First[k];
                end = s.End[k];
                if (first < end) Stamp(s.Buffer, m, first, end, timestamp);
            }
            else
            {
                first = r0;
                end = r1;
                Stamp(s.Buffer, m, r0, r1, timestamp);
            }
            if (corrupt)
            {
                for (var r = r0; r < r1; r++)
                {
                    if (!s.Bad[m * _blocksPerChunk + r] || (r >= first && r < end)) continue;
                    Restamp(s.Buffer, m, r);
                    if (first == end) { first = r; end = r + 1; }
                    else { first = Math.Min(first, r); end = Math.Max(end, r + 1); }
                }
            }
            if (first < end) s.Tasks[n++] = WriteSlotAsync(s, m, stripe, first, end);
        }
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
    }

    /// <summary>True when every data chunk's dirty rows are exactly [r0, r1).</summary>
    private bool CoversRowsEvenly(StripeScratch s, int r0, int r1)
    {
        for (var d = 0; d < _dataCount; d++)
            if (s.First[d] != r0 || s.End[d] != r1) return false;
        return true;
    }

    /// <summary>
    /// Points <see cref="StripeScratch.Data"/> at the caller's rows [r0, r1) of each data chunk (no copy), computes the
    /// parity rows into the scratch from them, and stamps every slot's metadata for those rows.
    /// </summary>
    /// <param name="source">The caller's bytes of this stripe, from byte <paramref name="inStripe"/> of the stripe
    /// on.</param>
    private void ComputeFromSource(
        StripeScratch s,
        ReadOnlyMemory<byte> source,
        int inStripe,
        int r0,
        int r1,
        long timestamp)
    {
        var rowsBytes = (r1 - r0) * B;
        for (var d = 0; d < _dataCount; d++) s.Data[d] = source.Slice(d * _chunk + r0 * B - inStripe, rowsBytes);
        var pm = s.SlotMember[_dataCount];
        if (_parityCount == 1) RaidMath.ComputeP(s.Data, Rows(s.Buffer, pm, r0, r1));
        else RaidMath.ComputePQ(
            s.Data, Rows(s.Buffer, pm, r0, r1), Rows(s.Buffer, s.SlotMember[_dataCount + 1], r0, r1));
        for (var k = 0; k < _dataCount + _parityCount; k++)
        {
            var m = s.SlotMember[k];
            if (k < _dataCount) StampRows(Meta(s.Buffer, m), s.Data[k].Span, r0, r1, timestamp);
            else Stamp(s.Buffer, m, r0, r1, timestamp);
        }
    }

    /// <summary>
    /// A full-stripe write without copying the data (<see cref="ComputeFromSource"/>): each data member gets its rows
    /// from the caller's buffer and its metadata sector from the scratch, in one gathered write when they are adjacent.
    /// </summary>
    private async ValueTask WriteFullStripeFromSourceAsync(
        StripeScratch s,
        long stripe,
        int inStripe,
        ReadOnlyMemory<byte> source,
        long timestamp,
        int r0,
        int r1)
    {
        ComputeFromSource(s, source, inStripe, r0, r1, timestamp);
        var slot = Layout.MemberOffsetBytes(stripe, 0);
        ReadOnlyMemory<byte>[] pieces = ArrayPool<ReadOnlyMemory<byte>>.Shared.Rent(2 * _dataCount);
        try
        {
            var n = 0;
            for (var k = 0; k < _dataCount + _parityCount; k++)
            {
                var m = s.SlotMember[k];
                if (!s.Usable[m] || !IsUsable(m, stripe)) continue;
                if (k >= _dataCount)
                {
                    s.Tasks[n++] = WriteSlotAsync(s, m, stripe, r0, r1);
                    continue;
                }
                pieces[2 * k] = s.Data[k];
                pieces[2 * k + 1] = s.Buffer.AsMemory(m * _slotBytes + _chunk, _metaBytes);
                if (r1 == _blocksPerChunk)
                {
                    // The rows run to the end of the chunk: the metadata sector is adjacent, one request carries both.
                    s.Tasks[n++] = MemberGatherAsync(
                        m,
                        slot + r0 * B,
                        new ArraySegment<ReadOnlyMemory<byte>>(pieces, 2 * k, 2),
                        CancellationToken.None);
                }
                else
                {
                    s.Tasks[n++] = MemberGatherAsync(
                        m,
                        slot + r0 * B,
                        new ArraySegment<ReadOnlyMemory<byte>>(pieces, 2 * k, 1),
                        CancellationToken.None);
                    s.Tasks[n++] = MemberGatherAsync(
                        m,
                        slot + _chunk,
                        new ArraySegment<ReadOnlyMemory<byte>>(pieces, 2 * k + 1, 1),
                        CancellationToken.None);
                }
            }
            await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<ReadOnlyMemory<byte>>.Shared.Return(pieces, clearArray: true);
            Array.Clear(s.Data);
        }
    }

    /// <summary>
    /// Issues the reads a healthy-stripe strategy needs and verifies what it read. False sends the
    /// caller to the reconstructing path (a member failed or a block was corrupt).
    /// </summary>
    private async ValueTask<bool> TryPlannedReadsAsync(
        StripeScratch s,
        long stripe,
        WriteStrategy strategy,
        int r0,
        int r1,
        CancellationToken cancellationToken)
    {
        Debug.Assert(
            strategy is WriteStrategy.FullStripe or WriteStrategy.ReadModifyWrite or WriteStrategy.ReconstructWrite,
            "only a planned strategy reads this way");
        var n = 0;
        var slots = _dataCount + _parityCount;
        for (var k = 0; k < slots; k++)
        {
            var m = s.SlotMember[k];
            var isData = k < _dataCount;
            int first = isData ? s.First[k] : r0, end = isData ? s.End[k] : r1;
            var dirty = first < end;
            // Every written member needs its whole metadata sector unless all its entries are rewritten.
            var needMeta = dirty && (first > 0 || end < _blocksPerChunk);
            // A partial parity log entry records what each parity row held before the write (its guard).
            if (!isData && dirty && _pplSlotBytes > 0 && !CoversRowsEvenly(s, r0, r1)) needMeta = true;
            switch (strategy)
            {
                case WriteStrategy.FullStripe:
                    if (needMeta) s.Tasks[n++] = ReadMetadataAsync(s, m, stripe, cancellationToken);
                    break;
                case WriteStrategy.ReadModifyWrite:
                    if (dirty) s.Tasks[n++] = ReadSlotAsync(s, m, stripe, first, end, cancellationToken);
                    break;
                case WriteStrategy.ReconstructWrite:
                    // The rows of the union each data chunk does not overwrite.
                    if (!isData)
                    {
                        if (needMeta) s.Tasks[n++] = ReadMetadataAsync(s, m, stripe, cancellationToken);
                    }
                    else if (!dirty)
                        s.Tasks[n++] = ReadSlotAsync(s, m, stripe, r0, r1, cancellationToken);
                    else
                    {
                        s.Tasks[n++] = ReadSlotAsync(s, m, stripe, r0, first, cancellationToken);
                        if (end < r1) s.Tasks[n++] = ReadRowsAsync(s, m, stripe, end, r1, cancellationToken);
                    }
                    break;
            }
        }
        if (!await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false)) return false;
        if (strategy == WriteStrategy.FullStripe) return true;
        for (var k = 0; k < slots; k++)
        {
            var m = s.SlotMember[k];
            var isData = k < _dataCount;
            int first = isData ? s.First[k] : r0, end = isData ? s.End[k] : r1;
            var bad = strategy == WriteStrategy.ReadModifyWrite
                ? (first < end ? VerifyRows(s, m, first, end) : 0)
                : isData
                    ? (first < end ? VerifyRows(s, m, r0, first) + VerifyRows(s, m, end, r1) : VerifyRows(s, m, r0, r1))
                    : 0;
            if (bad > 0) return false;
        }
        return true;
    }
}
