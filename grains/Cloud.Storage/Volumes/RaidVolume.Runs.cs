using System.Buffers;
using System.Runtime.CompilerServices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Parity;

namespace Cloud.Storage.Volumes;

// Reads and writes of several stripes: one I/O per member and contiguous range instead of one or two per chunk.
public sealed partial class RaidVolume
{
    /// <summary>Reads a request that spans several stripes: the whole run at once when it can, else stripe by stripe.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadRunAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (await TryReadRunAsync(offsetBytes, destination, cancellationToken).ConfigureAwait(false)) return;
        await RunAsync(false, offsetBytes, destination, default, 0, false, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The optimistic read of <see cref="TryReadFastAsync"/> for a run of stripes. On a member the chunk slots of
    /// consecutive stripes lie back to back, each chunk followed by its metadata sector, so a member's part of a
    /// sequential read is one contiguous range: one vectored I/O (data rows straight into
    /// <paramref name="destination"/>, metadata sectors into a scratch buffer) where the stripe-by-stripe path issues
    /// two per chunk. Every block is then verified against its checksum.
    /// </summary>
    /// <returns>
    /// False, with <paramref name="destination"/> not to be trusted, when a needed member is not usable, an I/O
    /// failed or a block did not verify (perhaps a write in flight): the caller reads stripe by stripe, which settles
    /// each of those under the stripe lock.
    /// </returns>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> TryReadRunAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        int stripeData = Geometry.StripeDataBytes;
        long firstStripe = offsetBytes / stripeData;
        int stripes = (int)((offsetBytes + destination.Length - 1) / stripeData - firstStripe + 1);
        int chunks = stripes * _dataCount;
        // Per chunk (stripe-major): the member read, its first and end row (member -1: nothing to read).
        int[] plan = ArrayPool<int>.Shared.Rent(chunks * 3);
        byte[] metas = ArrayPool<byte>.Shared.Rent(chunks * _metaBytes);
        Memory<byte>[] pieces = ArrayPool<Memory<byte>>.Shared.Rent(chunks * 2);
        // Per I/O: member, first piece, piece count; and its member offset.
        int[] ios = ArrayPool<int>.Shared.Rent(chunks * 2 * 3);
        long[] ioOffsets = ArrayPool<long>.Shared.Rent(chunks * 2);
        ValueTask<bool>[] tasks = ArrayPool<ValueTask<bool>>.Shared.Rent(chunks * 2);
        StripeScratch s = _scratchPool.Rent();
        try
        {
            for (int i = 0; i < stripes; i++)
            {
                long stripe = firstStripe + i;
                long stripeStart = stripe * stripeData;
                int inStripe = (int)Math.Max(0, offsetBytes - stripeStart);
                ResetScratch(s, stripe);
                ChunkRanges(s, inStripe, (int)(Math.Min(stripeStart + stripeData, offsetBytes + destination.Length) - stripeStart - inStripe));
                int preferred = ReadCopyMember(stripe);
                for (int d = 0; d < _dataCount; d++)
                {
                    int c = (i * _dataCount + d) * 3;
                    plan[c] = -1;
                    if (s.First[d] == s.End[d]) continue;
                    int m = preferred >= 0 ? FirstUsableFrom(s, preferred) : Layout.DataMember(stripe, d);
                    if (m < 0 || !s.Usable[m]) return false; // degraded: the stripe-by-stripe path reconstructs
                    plan[c] = m;
                    plan[c + 1] = s.First[d];
                    plan[c + 2] = s.End[d];
                }
            }

            // Group each member's pieces, in stripe order, into runs of contiguous member offsets.
            int pieceCount = 0, ioCount = 0;
            for (int m = 0; m < _memberCount; m++)
            {
                long runEnd = -1;
                for (int i = 0; i < stripes; i++)
                {
                    long stripe = firstStripe + i;
                    long slot = Layout.MemberOffsetBytes(stripe, 0);
                    long stripeStart = stripe * stripeData;
                    for (int d = 0; d < _dataCount; d++)
                    {
                        int c = (i * _dataCount + d) * 3;
                        if (plan[c] != m) continue;
                        int first = plan[c + 1], end = plan[c + 2];
                        int destOffset = (int)(stripeStart + d * _chunk + first * B - offsetBytes);
                        // The rows, then the metadata sector: adjacent when the rows run to the end of the chunk.
                        for (int part = 0; part < 2; part++)
                        {
                            long at = part == 0 ? slot + first * B : slot + _chunk;
                            if (at != runEnd)
                            {
                                ios[ioCount * 3] = m;
                                ios[ioCount * 3 + 1] = pieceCount;
                                ios[ioCount * 3 + 2] = 0;
                                ioOffsets[ioCount++] = at;
                            }
                            pieces[pieceCount] = part == 0
                                ? destination.Slice(destOffset, (end - first) * B)
                                : metas.AsMemory((i * _dataCount + d) * _metaBytes, _metaBytes);
                            runEnd = at + pieces[pieceCount].Length;
                            pieceCount++;
                            ios[(ioCount - 1) * 3 + 2]++;
                        }
                    }
                }
            }

            for (int k = 0; k < ioCount; k++)
                tasks[k] = MemberScatterAsync(ios[k * 3], ioOffsets[k], new ArraySegment<Memory<byte>>(pieces, ios[k * 3 + 1], ios[k * 3 + 2]), cancellationToken);
            if (!await AwaitAllAsync(tasks, ioCount).ConfigureAwait(false)) return false;

            for (int i = 0; i < stripes; i++)
            {
                long stripeStart = (firstStripe + i) * stripeData;
                for (int d = 0; d < _dataCount; d++)
                {
                    int c = (i * _dataCount + d) * 3;
                    if (plan[c] < 0) continue;
                    ReadOnlySpan<byte> meta = metas.AsSpan((i * _dataCount + d) * _metaBytes, _metaBytes);
                    for (int r = plan[c + 1]; r < plan[c + 2]; r++)
                        if (!OnDiskFormat.Verify(destination.Span.Slice((int)(stripeStart + d * _chunk + r * B - offsetBytes), B), meta, r)) return false;
                }
            }
            return true;
        }
        finally
        {
            _scratchPool.Return(s);
            ArrayPool<ValueTask<bool>>.Shared.Return(tasks, clearArray: true);
            ArrayPool<long>.Shared.Return(ioOffsets);
            ArrayPool<int>.Shared.Return(ios);
            ArrayPool<Memory<byte>>.Shared.Return(pieces, clearArray: true);
            ArrayPool<byte>.Shared.Return(metas);
            ArrayPool<int>.Shared.Return(plan);
        }
    }
}

// Writes of several whole stripes: one gathered write per member and contiguous range.
public sealed partial class RaidVolume
{
    /// <summary>The most stripes one run write covers (a 4 MiB request over 4 x 64 KiB data chunks); longer requests go stripe by stripe.</summary>
    private const int MaxRunWriteStripes = 16;

    /// <summary>True for a RAID-5/6 write of two or more whole stripes, which <see cref="WriteRunAsync"/> takes.</summary>
    private bool IsRunWrite(long offsetBytes, int lengthBytes)
    {
        int stripeData = Geometry.StripeDataBytes;
        return Geometry.Level is RaidLevel.Raid5 or RaidLevel.Raid6
            && offsetBytes % stripeData == 0 && lengthBytes % stripeData == 0
            && lengthBytes / stripeData is >= 2 and <= MaxRunWriteStripes;
    }

    /// <summary>
    /// Writes whole stripes: parity and checksums computed from the caller's rows, then each member's part of the run
    /// (its data or parity chunk and metadata sector of every stripe, back to back on the member) in one gathered
    /// write, under the stripe locks and write intents of every stripe of the run. Besides the system calls, a long
    /// contiguous write lets the kernel cache a member in large pages (folios): a file written chunk by chunk in 68 KiB
    /// pieces reads back from the page cache at less than half the speed of one written in long runs.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteRunAsync(long offsetBytes, ReadOnlyMemory<byte> source, long timestamp, bool fua, CancellationToken cancellationToken)
    {
        int stripeData = Geometry.StripeDataBytes;
        long firstStripe = offsetBytes / stripeData;
        int stripes = source.Length / stripeData;
        int slots = _dataCount + _parityCount;

        // The stripe locks are striped over a fixed array: take each distinct one once, in index order (the
        // stripe-by-stripe path holds one at a time, so no cycle can form).
        int[] locks = new int[stripes];
        for (int i = 0; i < stripes; i++) locks[i] = (int)((firstStripe + i) % StripeLockCount);
        Array.Sort(locks);
        int held = 0, begun = 0;
        StripeScratch[] scratches = new StripeScratch[stripes];
        ReadOnlyMemory<byte>[] pieces = ArrayPool<ReadOnlyMemory<byte>>.Shared.Rent(stripes * 2 * _memberCount);
        int[] ios = ArrayPool<int>.Shared.Rent(stripes * _memberCount * 3);
        long[] ioOffsets = ArrayPool<long>.Shared.Rent(stripes * _memberCount);
        ValueTask<bool>[] tasks = ArrayPool<ValueTask<bool>>.Shared.Rent(stripes * _memberCount);
        try
        {
            for (; held < stripes; held++)
            {
                if (held > 0 && locks[held] == locks[held - 1]) continue;
                await _stripeLocks[locks[held]].WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            ThrowIfFailed();
            for (; begun < stripes; begun++) await _intent.BeginAsync(firstStripe + begun, cancellationToken).ConfigureAwait(false);

            for (int i = 0; i < stripes; i++)
            {
                long stripe = firstStripe + i;
                StripeScratch s = scratches[i] = _scratchPool.Rent();
                ResetScratch(s, stripe);
                for (int d = 0; d < _dataCount; d++) s.Data[d] = source.Slice(i * stripeData + d * _chunk, _chunk);
                int pm = s.SlotMember[_dataCount];
                int qm = _parityCount == 2 ? s.SlotMember[_dataCount + 1] : -1;
                if (_parityCount == 1) RaidMath.ComputeP(s.Data, Rows(s.Buffer, pm, 0, _blocksPerChunk));
                else RaidMath.ComputePQ(s.Data, Rows(s.Buffer, pm, 0, _blocksPerChunk), Rows(s.Buffer, qm, 0, _blocksPerChunk));
                for (int k = 0; k < slots; k++)
                {
                    int m = s.SlotMember[k];
                    if (k < _dataCount) StampRows(Meta(s.Buffer, m), s.Data[k].Span, 0, _blocksPerChunk, timestamp);
                    else Stamp(s.Buffer, m, 0, _blocksPerChunk, timestamp);
                }
            }

            // Each member's pieces in stripe order, grouped into contiguous ranges; a stripe the member cannot take
            // (failed, or not yet rebuilt) is skipped, as the stripe-by-stripe path skips it.
            int pieceCount = 0, ioCount = 0;
            for (int m = 0; m < _memberCount; m++)
            {
                long runEnd = -1;
                for (int i = 0; i < stripes; i++)
                {
                    long stripe = firstStripe + i;
                    StripeScratch s = scratches[i];
                    if (!s.Usable[m] || !IsUsable(m, stripe)) { runEnd = -1; continue; }
                    int k = Array.IndexOf(s.SlotMember, m, 0, slots);
                    if (k < 0) continue;
                    long at = Layout.MemberOffsetBytes(stripe, 0);
                    if (at != runEnd)
                    {
                        ios[ioCount * 3] = m;
                        ios[ioCount * 3 + 1] = pieceCount;
                        ios[ioCount * 3 + 2] = 0;
                        ioOffsets[ioCount++] = at;
                    }
                    pieces[pieceCount++] = k < _dataCount ? s.Data[k] : s.Buffer.AsMemory(m * _slotBytes, _chunk);
                    pieces[pieceCount++] = s.Buffer.AsMemory(m * _slotBytes + _chunk, _metaBytes);
                    ios[(ioCount - 1) * 3 + 2] += 2;
                    runEnd = at + _chunk + _metaBytes;
                }
            }
            for (int j = 0; j < ioCount; j++)
                tasks[j] = MemberGatherAsync(ios[j * 3], ioOffsets[j], new ArraySegment<ReadOnlyMemory<byte>>(pieces, ios[j * 3 + 1], ios[j * 3 + 2]), CancellationToken.None);
            await AwaitAllAsync(tasks, ioCount).ConfigureAwait(false);
            ThrowIfFailed();
        }
        finally
        {
            for (int i = 0; i < begun; i++) _intent.End(firstStripe + i);
            for (int i = 0; i < held; i++)
                if (i == 0 || locks[i] != locks[i - 1]) _stripeLocks[locks[i]].Release();
            foreach (StripeScratch? s in scratches)
            {
                if (s is null) continue;
                Array.Clear(s.Data);
                _scratchPool.Return(s);
            }
            ArrayPool<ValueTask<bool>>.Shared.Return(tasks, clearArray: true);
            ArrayPool<long>.Shared.Return(ioOffsets);
            ArrayPool<int>.Shared.Return(ios);
            ArrayPool<ReadOnlyMemory<byte>>.Shared.Return(pieces, clearArray: true);
        }
        if (fua) await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
    }
}
