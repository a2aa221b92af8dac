using System.Buffers;
using System.Runtime.CompilerServices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;

namespace Cloud.Storage.Volumes;

// Reads of several stripes: one I/O per member and contiguous range instead of two per chunk.
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
