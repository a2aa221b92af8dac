using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Parity;

namespace Cloud.Storage.Volumes;

// Member I/O primitives shared by the data path, rebuild, scrub and resync.
public sealed partial class RaidVolume
{
    private const int B = VolumeGeometry.BlockSizeBytes;

    /// <summary>
    /// Reads one range of member <paramref name="m"/>; an I/O error fails the member and returns false.
    /// </summary>
    private ValueTask<bool> MemberReadAsync(
        int m,
        long memberOffsetBytes,
        Memory<byte> buffer,
        CancellationToken cancellationToken) =>
        MemberRequestAsync(m, new ReadRequest(memberOffsetBytes, buffer), cancellationToken);

    /// <summary>
    /// Writes one range of member <paramref name="m"/>; an I/O error fails the member and returns false.
    /// </summary>
    private ValueTask<bool> MemberWriteAsync(
        int m,
        long memberOffsetBytes,
        ReadOnlyMemory<byte> buffer,
        CancellationToken cancellationToken) =>
        MemberRequestAsync(m, new WriteRequest(memberOffsetBytes, buffer), cancellationToken);

    /// <summary>
    /// Reads one contiguous range of member <paramref name="m"/> into <paramref name="pieces"/> in turn: one request
    /// where the device takes several buffers (<see cref="IVectoredBlockDevice"/>), one per piece otherwise, all in
    /// flight at once (a page blob pays a round trip per request). An I/O error fails the member and returns false.
    /// </summary>
    private ValueTask<bool> MemberScatterAsync(
        int m,
        long memberOffsetBytes,
        ArraySegment<Memory<byte>> pieces,
        CancellationToken cancellationToken) =>
        MemberRequestAsync(m, new ScatterRequest(memberOffsetBytes, pieces), cancellationToken);

    /// <summary>
    /// Writes <paramref name="pieces"/> in turn to one contiguous range of member <paramref name="m"/>; see
    /// <see cref="MemberScatterAsync"/>.
    /// </summary>
    private ValueTask<bool> MemberGatherAsync(
        int m,
        long memberOffsetBytes,
        ArraySegment<ReadOnlyMemory<byte>> pieces,
        CancellationToken cancellationToken) =>
        MemberRequestAsync(m, new GatherRequest(memberOffsetBytes, pieces), cancellationToken);

    /// <summary>
    /// Runs one request on member <paramref name="m"/>; an I/O error fails the member and returns false. Requests are
    /// structs, so that issuing one allocates no closure.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> MemberRequestAsync<TRequest>(
        int m,
        TRequest request,
        CancellationToken cancellationToken)
        where TRequest : struct, IMemberRequest
    {
        IBlockDevice? d = _devices[m];
        if (d is null) return false;
        if (request.IsEmpty) return true;
        using var activity = StorageTracing.Source.StartActivity(StorageTracing.MemberIo);
        if (activity is not null)
        {
            activity.SetTag("cloud.member", m);
            activity.SetTag("cloud.device", d.Name);
            activity.SetTag("cloud.io", request.Kind);
        }
        try
        {
            await request.StartAsync(d, cancellationToken).ConfigureAwait(false);
            if (request.LeavesUnflushedData) NoteWriteDone(m);
            return true;
        }
        catch (BlockDeviceException e)
        {
            activity?.SetStatus(ActivityStatusCode.Error, e.Message);
            await MarkLostAsync(m, e, cancellationToken).ConfigureAwait(false);
            return false;
        }
    }

    /// <summary>One I/O request to a member device.</summary>
    private interface IMemberRequest
    {
        /// <summary>Nothing to transfer: the request succeeds without reaching the device.</summary>
        bool IsEmpty { get; }

        /// <summary>What the request does, for its span: read, write, scatter or gather.</summary>
        string Kind { get; }

        /// <summary>A write whose data is not yet durable when it completes (a later flush of the member must cover it).</summary>
        bool LeavesUnflushedData { get; }

        ValueTask StartAsync(IBlockDevice device, CancellationToken cancellationToken);
    }

    private readonly struct ReadRequest(long offsetBytes, Memory<byte> buffer) : IPieceRequest<Memory<byte>>
    {
        public bool IsEmpty => buffer.Length == 0;

        public string Kind => "read";

        public bool LeavesUnflushedData => false;

        public ValueTask StartAsync(IBlockDevice device, CancellationToken cancellationToken)
            => device.ReadAsync(offsetBytes, buffer, cancellationToken);

        public static int LengthBytes(Memory<byte> piece) => piece.Length;

        public static ValueTask StartPieceAsync(
            IBlockDevice device,
            long offsetBytes,
            Memory<byte> piece,
            CancellationToken cancellationToken) =>
            device.ReadAsync(offsetBytes, piece, cancellationToken);
    }

    private readonly struct WriteRequest(
        long offsetBytes,
        ReadOnlyMemory<byte> buffer) : IPieceRequest<ReadOnlyMemory<byte>>
    {
        public bool IsEmpty => buffer.Length == 0;

        public string Kind => "write";

        public bool LeavesUnflushedData => true;

        public ValueTask StartAsync(IBlockDevice device, CancellationToken cancellationToken)
            => device.WriteAsync(offsetBytes, buffer, cancellationToken);

        public static int LengthBytes(ReadOnlyMemory<byte> piece) => piece.Length;

        public static ValueTask StartPieceAsync(
            IBlockDevice device,
            long offsetBytes,
            ReadOnlyMemory<byte> piece,
            CancellationToken cancellationToken) =>
            device.WriteAsync(offsetBytes, piece, cancellationToken);
    }

    private readonly struct ScatterRequest(long offsetBytes, ArraySegment<Memory<byte>> pieces) : IMemberRequest
    {
        public bool IsEmpty => pieces.Count == 0;

        public string Kind => "scatter";

        public bool LeavesUnflushedData => false;

        public ValueTask StartAsync(IBlockDevice device, CancellationToken cancellationToken)
            => device is IVectoredBlockDevice v
            ? v.ReadScatterAsync(offsetBytes, pieces, cancellationToken)
            : EachPieceAsync<Memory<byte>, ReadRequest>(device, offsetBytes, pieces, cancellationToken);
    }

    /// <summary>
    /// A gathered write; with <paramref name="durable"/>, one that returns once durable on the member (a forced-unit-access
    /// write: write and flush as one request where the member is on another host).
    /// </summary>
    private readonly struct GatherRequest(
        long offsetBytes, ArraySegment<ReadOnlyMemory<byte>> pieces, bool durable = false) : IMemberRequest
    {
        public bool IsEmpty => pieces.Count == 0;

        public string Kind => durable ? "durable gather" : "gather";

        public bool LeavesUnflushedData => !durable;

        public ValueTask StartAsync(IBlockDevice device, CancellationToken cancellationToken)
        {
            if (device is IVectoredBlockDevice v)
                return durable
                    ? v.WriteGatherDurableAsync(offsetBytes, pieces, cancellationToken)
                    : v.WriteGatherAsync(offsetBytes, pieces, cancellationToken);
            return durable
                ? WriteThenFlushAsync(device, offsetBytes, pieces, cancellationToken)
                : EachPieceAsync<ReadOnlyMemory<byte>, WriteRequest>(device, offsetBytes, pieces, cancellationToken);
        }

        private static async ValueTask WriteThenFlushAsync(
            IBlockDevice device, long offsetBytes, ArraySegment<ReadOnlyMemory<byte>> pieces, CancellationToken cancellationToken)
        {
            await EachPieceAsync<ReadOnlyMemory<byte>, WriteRequest>(device, offsetBytes, pieces, cancellationToken)
                .ConfigureAwait(false);
            await device.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Two ranges of one member as one request (a chunk's rows and its metadata sector, with rows the request leaves
    /// out between them): one request where the device takes it (<see cref="IVectoredBlockDevice.ReadSplitAsync"/>, one
    /// network request to a member on another host), both ranges at once otherwise.
    /// </summary>
    private readonly struct SplitRequest(
        bool write, long offsetBytes, Memory<byte> first, long secondOffsetBytes, Memory<byte> second) : IMemberRequest
    {
        public bool IsEmpty => first.Length == 0 && second.Length == 0;

        public string Kind => write ? "split write" : "split read";

        public bool LeavesUnflushedData => write;

        public ValueTask StartAsync(IBlockDevice device, CancellationToken cancellationToken)
        {
            if (device is IVectoredBlockDevice v)
                return write
                    ? v.WriteSplitAsync(offsetBytes, first, secondOffsetBytes, second, cancellationToken)
                    : v.ReadSplitAsync(offsetBytes, first, secondOffsetBytes, second, cancellationToken);
            return EachRange(device, cancellationToken);
        }

        private ValueTask EachRange(IBlockDevice device, CancellationToken cancellationToken)
        {
            ValueTask a = write
                ? device.WriteAsync(offsetBytes, first, cancellationToken)
                : device.ReadAsync(offsetBytes, first, cancellationToken);
            ValueTask b;
            try
            {
                b = write
                    ? device.WriteAsync(secondOffsetBytes, second, cancellationToken)
                    : device.ReadAsync(secondOffsetBytes, second, cancellationToken);
            }
            catch (Exception e) { b = ValueTask.FromException(e); }
            return DeviceIo.BothAsync(a, b);
        }
    }

    /// <summary>
    /// A request of one buffer, which <see cref="EachPieceAsync"/> issues once per piece of a vectored request.
    /// </summary>
    private interface IPieceRequest<TPiece> : IMemberRequest
    {
        static abstract int LengthBytes(TPiece piece);

        static abstract ValueTask StartPieceAsync(
            IBlockDevice device,
            long offsetBytes,
            TPiece piece,
            CancellationToken cancellationToken);
    }

    /// <summary>
    /// Starts one I/O per piece at consecutive offsets, then awaits every one that started, even after one fails
    /// (their buffers stay in use until then), and rethrows the first error. Only for devices without vectored I/O.
    /// </summary>
    private static async ValueTask EachPieceAsync<TPiece, TRequest>(
        IBlockDevice device,
        long offsetBytes,
        ArraySegment<TPiece> pieces,
        CancellationToken cancellationToken)
        where TRequest : struct, IPieceRequest<TPiece>
    {
        ValueTask[] started = new ValueTask[pieces.Count];
        var count = 0;
        var at = offsetBytes;
        for (; count < pieces.Count; count++)
        {
            try { started[count] = TRequest.StartPieceAsync(device, at, pieces[count], cancellationToken); }
            catch (Exception e)
            {
                // Refused before it started (bad arguments): start no more.
                started[count++] = ValueTask.FromException(e);
                break;
            }
            at += TRequest.LengthBytes(pieces[count]);
        }
        ExceptionDispatchInfo? error = null;
        for (var i = 0; i < count; i++)
        {
            try { await started[i].ConfigureAwait(false); }
            catch (Exception e) { error ??= ExceptionDispatchInfo.Capture(e); }
        }
        error?.Throw();
    }

    private ValueTask<bool> MemberIoAsync(
        int m,
        bool write,
        long memberOffsetBytes,
        Memory<byte> buffer,
        CancellationToken cancellationToken) =>
        write
            ? MemberWriteAsync(m, memberOffsetBytes, buffer, cancellationToken)
            : MemberReadAsync(m, memberOffsetBytes, buffer, cancellationToken);

    /// <summary>
    /// Reads rows [r0, r1) of member <paramref name="m"/>'s chunk in <paramref name="stripe"/> and its metadata sector
    /// into the member's image in the scratch.
    /// </summary>
    private ValueTask<bool> ReadSlotAsync(
        StripeScratch s,
        int m,
        long stripe,
        int r0,
        int r1,
        CancellationToken cancellationToken) =>
        SlotIoAsync(m, write: false, stripe, r0, r1, withMetadata: true, s.Buffer, cancellationToken);

    /// <summary>
    /// Reads only the metadata sector of member <paramref name="m"/>'s chunk in <paramref name="stripe"/>, for entries
    /// a write keeps.
    /// </summary>
    private ValueTask<bool> ReadMetadataAsync(
        StripeScratch s,
        int m,
        long stripe,
        CancellationToken cancellationToken) =>
        SlotIoAsync(m, write: false, stripe, 0, 0, withMetadata: true, s.Buffer, cancellationToken);

    /// <summary>
    /// Reads rows [r0, r1) of member <paramref name="m"/>'s chunk without its metadata sector (read separately, or
    /// already in the image).
    /// </summary>
    private ValueTask<bool> ReadRowsAsync(
        StripeScratch s,
        int m,
        long stripe,
        int r0,
        int r1,
        CancellationToken cancellationToken) =>
        SlotIoAsync(m, write: false, stripe, r0, r1, withMetadata: false, s.Buffer, cancellationToken);

    /// <summary>
    /// Writes rows [r0, r1) of member <paramref name="m"/>'s image and its metadata sector. Not cancellable: once a
    /// stripe's writes start, every one of them is issued, so that a cancelled caller does not leave data, parity and
    /// checksums disagreeing where the write-intent log would have to repair them.
    /// </summary>
    private ValueTask<bool> WriteSlotAsync(StripeScratch s, int m, long stripe, int r0, int r1) =>
        SlotIoAsync(m, write: true, stripe, r0, r1, withMetadata: true, s.Buffer, CancellationToken.None);

    /// <summary>
    /// Reads or writes rows [r0, r1) of member <paramref name="m"/>'s chunk in <paramref name="stripe"/>, and its
    /// metadata sector when <paramref name="withMetadata"/>, to or from the member's image in the scratch buffer, as one
    /// request: one I/O when the rows run to the end of the chunk (the metadata sector is adjacent, so a block and its
    /// checksum land together), a split request (<see cref="SplitRequest"/>) when rows the request leaves out lie between
    /// them. Callers use the named forms above.
    /// </summary>
    private ValueTask<bool> SlotIoAsync(
        int m,
        bool write,
        long stripe,
        int r0,
        int r1,
        bool withMetadata,
        byte[] buffer,
        CancellationToken cancellationToken)
    {
        Debug.Assert((uint)m < (uint)_memberCount, "member index out of range");
        Debug.Assert(0 <= r0 && r0 <= r1 && r1 <= _blocksPerChunk, "row range out of order or beyond the chunk");
        AssertStripeLocked(stripe);
        var image = m * _slotBytes;
        var slot = Layout.MemberOffsetBytes(stripe, 0);
        if (withMetadata && r0 < r1 && r1 < _blocksPerChunk)
            return MemberRequestAsync(
                m,
                new SplitRequest(
                    write,
                    slot + r0 * B,
                    buffer.AsMemory(image + r0 * B, (r1 - r0) * B),
                    slot + _chunk,
                    buffer.AsMemory(image + _chunk, _metaBytes)),
                cancellationToken);
        // One range: the rows, the rows and the metadata sector after them, or the metadata sector alone.
        var from = r0 < r1 ? r0 * B : _chunk;
        var length = (r0 < r1 ? (r1 - r0) * B : 0) + (withMetadata ? _metaBytes : 0);
        if (length == 0) return new(true);
        return MemberIoAsync(m, write, slot + from, buffer.AsMemory(image + from, length), cancellationToken);
    }

    /// <summary>
    /// Awaits <paramref name="count"/> started tasks, all of them even when one throws; true when every one succeeded.
    /// </summary>
    private static ValueTask<bool> AwaitAllAsync(ValueTask<bool>[] tasks, int count)
    {
        // Synchronous completion (memory devices, cached pages) needs no state machine.
        var all = true;
        for (var i = 0; i < count; i++)
        {
            if (!tasks[i].IsCompletedSuccessfully) return AwaitAllSlowAsync(tasks, count);
        }
        for (var i = 0; i < count; i++)
        {
            all &= tasks[i].Result;
            tasks[i] = default;
        }
        return new ValueTask<bool>(all);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<bool> AwaitAllSlowAsync(ValueTask<bool>[] tasks, int count)
    {
        var all = true;
        ExceptionDispatchInfo? error = null;
        for (var i = 0; i < count; i++)
        {
            try { all &= await tasks[i].ConfigureAwait(false); }
            catch (Exception e) { error ??= ExceptionDispatchInfo.Capture(e); }
            tasks[i] = default;
        }
        error?.Throw();
        return all;
    }

    private Span<byte> Meta(byte[] buffer, int m) => buffer.AsSpan(m * _slotBytes + _chunk, _metaBytes);

    private Span<byte> Rows(byte[] buffer, int m, int r0, int r1)
        => buffer.AsSpan(m * _slotBytes + r0 * B, (r1 - r0) * B);

    private Memory<byte> RowsMemory(byte[] buffer, int m, int r0, int r1)
        => buffer.AsMemory(m * _slotBytes + r0 * B, (r1 - r0) * B);

    /// <summary>
    /// Verifies rows [r0, r1) of member m's image; marks failures in <see cref="StripeScratch.Bad"/>; returns the
    /// count.
    /// </summary>
    private int VerifyRows(StripeScratch s, int m, int r0, int r1)
    {
        var bad = 0;
        ReadOnlySpan<byte> meta = Meta(s.Buffer, m);
        for (var r = r0; r < r1; r++)
        {
            if (OnDiskFormat.Verify(Rows(s.Buffer, m, r, r + 1), meta, r)) continue;
            s.Bad[m * _blocksPerChunk + r] = true;
            bad++;
        }
        return bad;
    }

    /// <summary>
    /// Sets the entries of rows [r0, r1) of member m to (timestamp, checksum of the image) and zeroes the sector's
    /// padding.
    /// </summary>
    private void Stamp(byte[] buffer, int m, int r0, int r1, long timestamp)
        => StampRows(Meta(buffer, m), Rows(buffer, m, r0, r1), r0, r1, timestamp);

    /// <summary>
    /// Sets the entries of rows [r0, r1) in <paramref name="meta"/> from <paramref name="rows"/> (those rows' data) and
    /// zeroes the sector's padding.
    /// </summary>
    private void StampRows(Span<byte> meta, ReadOnlySpan<byte> rows, int r0, int r1, long timestamp)
    {
        for (var r = r0; r < r1; r++)
            OnDiskFormat.WriteEntry(meta, r, timestamp, OnDiskFormat.BlockChecksum(rows.Slice((r - r0) * B, B)));
        meta[(_blocksPerChunk * OnDiskFormat.MetadataEntryBytes)..].Clear();
    }

    /// <summary>Re-stamps row r of member m keeping its timestamp (a repaired block).</summary>
    private void Restamp(byte[] buffer, int m, int r)
    {
        Span<byte> meta = Meta(buffer, m);
        (var ts, _) = OnDiskFormat.ReadEntry(meta, r);
        OnDiskFormat.WriteEntry(meta, r, ts, OnDiskFormat.BlockChecksum(Rows(buffer, m, r, r + 1)));
    }

    private void ResetScratch(StripeScratch s, long stripe)
    {
        Array.Clear(s.Bad);
        for (var m = 0; m < _memberCount; m++) s.Usable[m] = IsUsable(m, stripe);
        var slots = _dataCount + _parityCount;
        if (Geometry.Level is RaidLevel.Raid5 or RaidLevel.Raid6)
            for (var k = 0; k < slots; k++) s.SlotMember[k] = Layout.MemberAtLogicalSlot(stripe, k);
        else
            for (var k = 0; k < slots; k++) s.SlotMember[k] = k;
    }

    /// <summary>What the caller needs from a reconstruction, to decide rows where too many members are bad.</summary>
    private enum Need
    {
        /// <summary>Data slot d's rows [First[d], End[d]) are to be read.</summary>
        ReadRanges,

        /// <summary>
        /// Data slot d's rows outside [First[d], End[d]) are kept (the ranges are being overwritten).
        /// </summary>
        KeepOutsideRanges,

        /// <summary>Every slot, parity included.</summary>
        All,
    }

    /// <summary>
    /// For RAID-5/6: reads rows [r0, r1) and the metadata of every usable member, verifies every
    /// block, and reconstructs in the images each (slot, row) that is unusable or corrupt. Throws
    /// <see cref="VolumeDataLossException"/> when a needed row has more bad slots than parity.
    /// </summary>
    /// <returns>True when some usable member had a corrupt block (the caller repairs it).</returns>
    private async ValueTask<bool> LoadAndReconstructAsync(
        StripeScratch s,
        long stripe,
        int r0,
        int r1,
        Need need,
        CancellationToken cancellationToken)
    {
        await RepairFromPartialParityAsync(stripe, cancellationToken).ConfigureAwait(false);
        var slots = _dataCount + _parityCount;
        var n = 0;
        for (var k = 0; k < slots; k++)
        {
            var m = s.SlotMember[k];
            if (s.Usable[m]) s.Tasks[n++] = ReadSlotAsync(s, m, stripe, r0, r1, cancellationToken);
        }
        await AwaitAllAsync(s.Tasks, n).ConfigureAwait(false);
        var corrupt = false;
        for (var k = 0; k < slots; k++)
        {
            var m = s.SlotMember[k];
            // A read that failed just now failed the member too.
            s.Usable[m] = s.Usable[m] && IsUsable(m, stripe);
            if (s.Usable[m]) corrupt |= VerifyRows(s, m, r0, r1) > 0;
        }
        ReconstructRows(s, stripe, r0, r1, need);
        return corrupt;
    }

    /// <summary>
    /// Reconstructs in the images, for rows [r0, r1), every slot that is unusable or marked bad, in runs of rows with
    /// the same bad slots. Throws <see cref="VolumeDataLossException"/> when a row that <paramref name="need"/> names
    /// has more bad slots than parity.
    /// </summary>
    private void ReconstructRows(StripeScratch s, long stripe, int r0, int r1, Need need)
    {
        Debug.Assert(0 <= r0 && r0 < r1 && r1 <= _blocksPerChunk, "row range out of order or beyond the chunk");
        for (var k = 0; k < _dataCount + _parityCount; k++)
            s.Members[k] = s.Buffer.AsMemory(s.SlotMember[k] * _slotBytes, _chunk);
        Span<int> missing = stackalloc int[2];
        var runStart = r0;
        var runMask = BadMask(s, r0);
        for (var r = r0 + 1; r <= r1; r++)
        {
            var mask = r < r1 ? BadMask(s, r) : ulong.MaxValue;
            if (mask == runMask) continue;
            ReconstructRun(s, stripe, runStart, r, runMask, need, missing);
            runStart = r;
            runMask = mask;
        }
    }

    /// <summary>
    /// Computes the parity rows [r0, r1) in the parity members' images from the data members' images.
    /// </summary>
    private void ComputeParityRows(StripeScratch s, int r0, int r1)
    {
        for (var d = 0; d < _dataCount; d++) s.Data[d] = RowsMemory(s.Buffer, s.SlotMember[d], r0, r1);
        var pm = s.SlotMember[_dataCount];
        if (_parityCount == 1) RaidMath.ComputeP(s.Data, Rows(s.Buffer, pm, r0, r1));
        else RaidMath.ComputePQ(
            s.Data, Rows(s.Buffer, pm, r0, r1), Rows(s.Buffer, s.SlotMember[_dataCount + 1], r0, r1));
    }

    /// <summary>
    /// Copies row <paramref name="r"/> and its metadata entry from member <paramref name="from"/>'s image to member
    /// <paramref name="to"/>'s.
    /// </summary>
    private void CopyRow(StripeScratch s, int from, int to, int r)
    {
        Rows(s.Buffer, from, r, r + 1).CopyTo(Rows(s.Buffer, to, r, r + 1));
        Meta(s.Buffer, from).Slice(r * OnDiskFormat.MetadataEntryBytes, OnDiskFormat.MetadataEntryBytes)
            .CopyTo(Meta(s.Buffer, to)[(r * OnDiskFormat.MetadataEntryBytes)..]);
    }

    private ulong BadMask(StripeScratch s, int row)
    {
        ulong mask = 0;
        for (var k = 0; k < _dataCount + _parityCount; k++)
        {
            var m = s.SlotMember[k];
            if (!s.Usable[m] || s.Bad[m * _blocksPerChunk + row]) mask |= 1UL << k;
        }
        return mask;
    }

    private void ReconstructRun(StripeScratch s, long stripe, int r0, int r1, ulong mask, Need need, Span<int> missing)
    {
        if (mask == 0) return;
        var count = System.Numerics.BitOperations.PopCount(mask);
        if (count <= _parityCount)
        {
            var i = 0;
            for (var k = 0; k < _dataCount + _parityCount; k++)
                if ((mask & (1UL << k)) != 0) missing[i++] = k;
            var slots = _dataCount + _parityCount;
            Memory<byte>[] rows = ArrayPool<Memory<byte>>.Shared.Rent(slots);
            try
            {
                for (var k = 0; k < slots; k++) rows[k] = s.Members[k].Slice(r0 * B, (r1 - r0) * B);
                RaidMath.Reconstruct(rows.AsSpan(0, slots), _parityCount, missing[..count]);
            }
            finally { ArrayPool<Memory<byte>>.Shared.Return(rows, clearArray: true); }
            return;
        }
        // More bad slots than parity: acceptable only if none of them is needed.
        for (var k = 0; k < _dataCount + _parityCount; k++)
        {
            if ((mask & (1UL << k)) == 0) continue;
            for (var r = r0; r < r1; r++)
            {
                var needed = need switch
                {
                    Need.All => true,
                    Need.ReadRanges => k < _dataCount && r >= s.First[k] && r < s.End[k],
                    _ => k < _dataCount && (r < s.First[k] || r >= s.End[k]),
                };
                if (needed)
                    throw new VolumeDataLossException(
                        $"volume '{Name}' stripe {stripe} block row {r}: {count} members unreadable or corrupt (slots mask 0x{mask:x}); {Geometry.Level} recovers at most {_parityCount}.");
            }
        }
    }
}
