using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;

namespace Cloud.Storage.Volumes;

// Reads and writes of several stripes: one I/O per member and contiguous range instead of one or two per chunk.
public sealed partial class RaidVolume
{
    /// <summary>
    /// The most stripes one run write covers (a 4 MiB request over 4 x 64 KiB data chunks); longer requests go stripe
    /// by stripe.
    /// </summary>
    private const int MaxRunWriteStripes = 16;

    /// <summary>
    /// Member I/O pieces added in the order they lie on each member, grouped into ranges of contiguous member offsets:
    /// one request per range. On a member the chunk slots of consecutive stripes lie back to back, each chunk followed
    /// by its metadata sector, so a run of stripes is one range per member unless something breaks it.
    /// </summary>
    private sealed class MemberRanges<T> : IDisposable
    {
        private readonly T[] _pieces;
        private readonly int[] _member, _first, _count;
        private readonly long[] _offset;
        private int _pieceCount;
        private long _end = -1;

        public MemberRanges(int maxPieces)
        {
            _pieces = ArrayPool<T>.Shared.Rent(maxPieces);
            _member = ArrayPool<int>.Shared.Rent(maxPieces);
            _first = ArrayPool<int>.Shared.Rent(maxPieces);
            _count = ArrayPool<int>.Shared.Rent(maxPieces);
            _offset = ArrayPool<long>.Shared.Rent(maxPieces);
        }

        /// <summary>The ranges so far.</summary>
        public int Count { get; private set; }

        /// <summary>
        /// Adds a piece at <paramref name="offsetBytes"/> of <paramref name="member"/>, continuing the last range when
        /// adjacent.
        /// </summary>
        public void Add(int member, long offsetBytes, T piece, int lengthBytes)
        {
            if (Count == 0 || _member[Count - 1] != member || offsetBytes != _end)
            {
                _member[Count] = member;
                _first[Count] = _pieceCount;
                _count[Count] = 0;
                _offset[Count++] = offsetBytes;
            }
            _pieces[_pieceCount++] = piece;
            _count[Count - 1]++;
            _end = offsetBytes + lengthBytes;
        }

        /// <summary>The next piece starts a range of its own (a stripe was skipped).</summary>
        public void Break() => _end = -1;

        public int Member(int range) => _member[range];

        public long OffsetBytes(int range) => _offset[range];

        public ArraySegment<T> Pieces(int range) => new(_pieces, _first[range], _count[range]);

        public void Dispose()
        {
            ArrayPool<T>.Shared.Return(_pieces, clearArray: true);
            ArrayPool<int>.Shared.Return(_member);
            ArrayPool<int>.Shared.Return(_first);
            ArrayPool<int>.Shared.Return(_count);
            ArrayPool<long>.Shared.Return(_offset);
        }
    }

    /// <summary>
    /// Reads a request that spans several stripes: the whole run at once when it can, else stripe by stripe.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadRunAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        if (await TryReadRunAsync(offsetBytes, destination, cancellationToken).ConfigureAwait(false)) return;
        await ReadStripeByStripeAsync(offsetBytes, destination, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The optimistic read of <see cref="TryReadFastAsync"/> for a run of stripes: a member's part of the run is one
    /// contiguous range, read with one vectored I/O (data rows straight into <paramref name="destination"/>, metadata
    /// sectors into a scratch buffer) where the stripe-by-stripe path issues two per chunk. Every block is then
    /// verified against its checksum.
    /// </summary>
    /// <returns>
    /// False, with <paramref name="destination"/> not to be trusted, when a needed member is not usable, an I/O
    /// failed or a block did not verify (perhaps a write in flight): the caller reads stripe by stripe, which settles
    /// each of those under the stripe lock.
    /// </returns>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> TryReadRunAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        var stripeData = Geometry.StripeDataBytes;
        var firstStripe = offsetBytes / stripeData;
        var stripes = (int)((offsetBytes + destination.Length - 1) / stripeData - firstStripe + 1);
        var chunks = stripes * _dataCount;
        // Per chunk (stripe-major): the member read, its first and end row (member -1: nothing to read).
        var plan = ArrayPool<int>.Shared.Rent(chunks * 3);
        var metas = AlignedArrayPool.Default.Rent(chunks * _metaBytes);
        var metasAt = AlignedArrayPool.Default.Offset(metas);
        ValueTask<bool>[] tasks = ArrayPool<ValueTask<bool>>.Shared.Rent(chunks * 2);
        using var ranges = new MemberRanges<Memory<byte>>(chunks * 2);
        StripeScratch s = _scratchPool.Rent();
        try
        {
            for (var i = 0; i < stripes; i++)
            {
                var stripe = firstStripe + i;
                var stripeStart = stripe * stripeData;
                var inStripe = (int)Math.Max(0, offsetBytes - stripeStart);
                ResetScratch(s, stripe);
                ChunkRanges(
                    s,
                    inStripe,
                    (int)(Math.Min(stripeStart + stripeData, offsetBytes + destination.Length)
                        - stripeStart - inStripe));
                var preferred = ReadCopyMember(stripe);
                for (var d = 0; d < _dataCount; d++)
                {
                    var c = (i * _dataCount + d) * 3;
                    plan[c] = -1;
                    if (s.First[d] == s.End[d]) continue;
                    var m = preferred >= 0 ? FirstUsableFrom(s, preferred) : Layout.DataMember(stripe, d);
                    if (m < 0 || !s.Usable[m]) return false; // degraded: the stripe-by-stripe path reconstructs
                    plan[c] = m;
                    plan[c + 1] = s.First[d];
                    plan[c + 2] = s.End[d];
                }
            }

            // Each member's pieces in stripe order: its rows, then its metadata sector (adjacent when the rows run to
            // the end of the chunk).
            for (var m = 0; m < _memberCount; m++)
            {
                for (var i = 0; i < stripes; i++)
                {
                    var stripe = firstStripe + i;
                    var slot = Layout.MemberOffsetBytes(stripe, 0);
                    for (var d = 0; d < _dataCount; d++)
                    {
                        var c = (i * _dataCount + d) * 3;
                        if (plan[c] != m) continue;
                        int first = plan[c + 1], rowsBytes = (plan[c + 2] - first) * B;
                        var destOffset = (int)(stripe * stripeData + d * _chunk + first * B - offsetBytes);
                        ranges.Add(m, slot + first * B, destination.Slice(destOffset, rowsBytes), rowsBytes);
                        var meta = metas.AsMemory(metasAt + c / 3 * _metaBytes, _metaBytes);
                        ranges.Add(m, slot + _chunk, meta, _metaBytes);
                    }
                }
            }
            for (var k = 0; k < ranges.Count; k++)
                tasks[k] = MemberScatterAsync(
                    ranges.Member(k), ranges.OffsetBytes(k), ranges.Pieces(k), cancellationToken);
            if (!await AwaitAllAsync(tasks, ranges.Count).ConfigureAwait(false)) return false;

            for (var i = 0; i < stripes; i++)
            {
                var stripeStart = (firstStripe + i) * stripeData;
                for (var d = 0; d < _dataCount; d++)
                {
                    var c = (i * _dataCount + d) * 3;
                    if (plan[c] < 0) continue;
                    ReadOnlySpan<byte> meta = metas.AsSpan(metasAt + c / 3 * _metaBytes, _metaBytes);
                    for (var r = plan[c + 1]; r < plan[c + 2]; r++)
                        if (!OnDiskFormat.Verify(
                            destination.Span.Slice((int)(stripeStart + d * _chunk + r * B - offsetBytes), B), meta, r))
                            return false;
                }
            }
            return true;
        }
        finally
        {
            _scratchPool.Return(s);
            ArrayPool<ValueTask<bool>>.Shared.Return(tasks, clearArray: true);
            AlignedArrayPool.Default.Return(metas);
            ArrayPool<int>.Shared.Return(plan);
        }
    }

    /// <summary>
    /// True for a RAID-5/6 write of two or more whole stripes, which <see cref="WriteRunAsync"/> takes.
    /// </summary>
    private bool IsRunWrite(long offsetBytes, int lengthBytes)
    {
        var stripeData = Geometry.StripeDataBytes;
        return Geometry.Level is RaidLevel.Raid5 or RaidLevel.Raid6
            && offsetBytes % stripeData == 0 && lengthBytes % stripeData == 0
            && lengthBytes / stripeData is >= 2 and <= MaxRunWriteStripes;
    }

    /// <summary>
    /// Writes whole stripes: parity and checksums computed from the caller's rows (<see cref="ComputeFromSource"/>),
    /// then each member's part of the run (its data or parity chunk and metadata sector of every stripe, back to back
    /// on the member) in one gathered write, under the stripe locks and write intents of every stripe of the run.
    /// Besides the system calls, a long contiguous write lets the kernel cache a member in large pages (folios): a file
    /// written chunk by chunk in 68 KiB pieces reads back from the page cache at less than half the speed of one
    /// written in long runs.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteRunAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        long timestamp,
        bool fua,
        CancellationToken cancellationToken)
    {
        var stripeData = Geometry.StripeDataBytes;
        var firstStripe = offsetBytes / stripeData;
        var stripes = source.Length / stripeData;
        var slots = _dataCount + _parityCount;

        // The stripe locks are striped over a fixed array: take each distinct one once, in index order (the
        // stripe-by-stripe path holds one at a time, so no cycle can form).
        var locks = ArrayPool<int>.Shared.Rent(stripes);
        for (var i = 0; i < stripes; i++) locks[i] = (int)((firstStripe + i) % StripeLockCount);
        Array.Sort(locks, 0, stripes);
        int held = 0, begun = 0;
        ulong flushed = 0;
        StripeScratch?[] scratches = ArrayPool<StripeScratch?>.Shared.Rent(stripes);
        ValueTask<bool>[] tasks = ArrayPool<ValueTask<bool>>.Shared.Rent(stripes * 2 * _memberCount);
        using var ranges = new MemberRanges<ReadOnlyMemory<byte>>(stripes * 2 * _memberCount);
        try
        {
            for (; held < stripes; held++)
            {
                if (held > 0 && locks[held] == locks[held - 1]) continue;
                Debug.Assert(
                    held == 0 || locks[held] > locks[held - 1], "stripe locks must be taken in ascending order");
                await _stripeLocks[locks[held]].WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            ThrowIfFailed();
            for (; begun < stripes; begun++)
                await _intent.BeginAsync(firstStripe + begun, cancellationToken).ConfigureAwait(false);
            for (var i = 0; i < stripes; i++)
                await MarkIfAwayAsync(firstStripe + i, cancellationToken).ConfigureAwait(false);

            for (var i = 0; i < stripes; i++)
            {
                StripeScratch s = scratches[i] = _scratchPool.Rent();
                ResetScratch(s, firstStripe + i);
                ComputeFromSource(s, source.Slice(i * stripeData, stripeData), 0, 0, _blocksPerChunk, timestamp);
            }

            // Each member's chunk and metadata sector in stripe order; a stripe the member cannot take (failed, or not
            // yet rebuilt) is left out, as the stripe-by-stripe path leaves it out.
            for (var m = 0; m < _memberCount; m++)
            {
                for (var i = 0; i < stripes; i++)
                {
                    var stripe = firstStripe + i;
                    StripeScratch s = scratches[i]!;
                    var k = Array.IndexOf(s.SlotMember, m, 0, slots);
                    if (k < 0 || !s.Usable[m] || !IsUsable(m, stripe))
                    {
                        ranges.Break();
                        continue;
                    }
                    var slot = Layout.MemberOffsetBytes(stripe, 0);
                    ranges.Add(m, slot, k < _dataCount ? s.Data[k] : s.Buffer.AsMemory(m * _slotBytes, _chunk), _chunk);
                    ranges.Add(m, slot + _chunk, s.Buffer.AsMemory(m * _slotBytes + _chunk, _metaBytes), _metaBytes);
                }
            }
            // A forced-unit-access run asks each member for a durable write (write and flush in one request where the
            // member is on another host), so those members need no flush of their own afterwards.
            for (var j = 0; j < ranges.Count; j++)
            {
                var m = ranges.Member(j);
                if (fua) flushed |= 1UL << m;
                tasks[j] = MemberRequestAsync(
                    m, new GatherRequest(ranges.OffsetBytes(j), ranges.Pieces(j), durable: fua), CancellationToken.None);
            }
            await AwaitAllAsync(tasks, ranges.Count).ConfigureAwait(false);
            ThrowIfFailed();
            // A member that went away during the writes missed them: recorded before they are acknowledged.
            for (var i = 0; i < stripes; i++)
                await MarkIfAwayAsync(firstStripe + i, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            for (var i = 0; i < begun; i++) _intent.End(firstStripe + i);
            for (var i = 0; i < held; i++)
                if (i == 0 || locks[i] != locks[i - 1]) _stripeLocks[locks[i]].Release();
            for (var i = 0; i < stripes; i++)
            {
                if (scratches[i] is not StripeScratch s) continue;
                Array.Clear(s.Data);
                _scratchPool.Return(s);
            }
            ArrayPool<StripeScratch?>.Shared.Return(scratches, clearArray: true);
            ArrayPool<int>.Shared.Return(locks);
            ArrayPool<ValueTask<bool>>.Shared.Return(tasks, clearArray: true);
        }
        // A member whose durable request failed is failed itself, and flushes nothing either way.
        if (fua) await FlushMembersAsync(flushed, cancellationToken).ConfigureAwait(false);
    }
}
