using System.Buffers;

namespace Cloud.Storage.Volumes;

// Requests of 512-byte sectors that start or end inside a 4 KiB block.
public sealed partial class RaidVolume
{
    /// <summary>The smallest unit <see cref="IBlockVolume"/> requests address (the sector of every common disk).</summary>
    public const int SectorBytes = 512;

    /// <summary>Zeroes for the sectors of a partly trimmed block.</summary>
    private static readonly byte[] ZeroBlock = new byte[B];

    /// <inheritdoc />
    public int SectorSizeBytes => SectorBytes;

    private static bool IsBlockAligned(long offsetBytes, long lengthBytes) =>
        offsetBytes % B == 0 && lengthBytes % B == 0;

    /// <summary>
    /// The blocks a sector-aligned range covers only in part (at most the first and the last), and the whole blocks
    /// between them as [MiddleStart, MiddleEnd).
    /// </summary>
    private static (bool Head, bool Tail, long MiddleStart, long MiddleEnd) SplitAtBlocks(long offsetBytes, long end)
    {
        var firstBlock = offsetBytes / B * B;
        var lastBlock = (end - 1) / B * B;
        var head = offsetBytes != firstBlock || end < firstBlock + B;
        var tail = lastBlock != firstBlock && end != lastBlock + B;
        return (head, tail, head ? firstBlock + B : firstBlock, tail ? lastBlock : end);
    }

    /// <summary>Reads a sector-aligned range: the partial blocks through a block buffer, the whole ones in place.</summary>
    private async ValueTask ReadSectorsAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        CheckSectorRange(offsetBytes, destination.Length, MaxIoSizeBytes, nameof(destination));
        var end = offsetBytes + destination.Length;
        var (head, tail, middleStart, middleEnd) = SplitAtBlocks(offsetBytes, end);
        if (middleEnd > middleStart)
            await ReadAsync(
                middleStart,
                destination.Slice((int)(middleStart - offsetBytes), (int)(middleEnd - middleStart)),
                cancellationToken).ConfigureAwait(false);
        if (!head && !tail) return;
        var block = ArrayPool<byte>.Shared.Rent(B);
        try
        {
            if (head)
            {
                var firstBlock = offsetBytes / B * B;
                await ReadAsync(firstBlock, block.AsMemory(0, B), cancellationToken).ConfigureAwait(false);
                var headEnd = Math.Min(end, firstBlock + B);
                block.AsSpan((int)(offsetBytes - firstBlock), (int)(headEnd - offsetBytes)).CopyTo(destination.Span);
            }
            if (tail)
            {
                var lastBlock = (end - 1) / B * B;
                await ReadAsync(lastBlock, block.AsMemory(0, B), cancellationToken).ConfigureAwait(false);
                block.AsSpan(0, (int)(end - lastBlock)).CopyTo(destination.Span[(int)(lastBlock - offsetBytes)..]);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(block); }
    }

    /// <summary>
    /// Writes a sector-aligned range: each partial block is read, patched and written under its stripe's lock (which
    /// every writer of the stripe takes, so none of them is lost in between); the whole blocks go the normal way.
    /// </summary>
    private async ValueTask WriteSectorsAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess,
        CancellationToken cancellationToken)
    {
        CheckSectorRange(offsetBytes, source.Length, MaxIoSizeBytes, nameof(source));
        var end = offsetBytes + source.Length;
        var (head, tail, middleStart, middleEnd) = SplitAtBlocks(offsetBytes, end);
        if (head)
        {
            var firstBlock = offsetBytes / B * B;
            var headEnd = Math.Min(end, firstBlock + B);
            await PatchBlockAsync(
                firstBlock,
                (int)(offsetBytes - firstBlock),
                source[..(int)(headEnd - offsetBytes)],
                cancellationToken).ConfigureAwait(false);
        }
        if (middleEnd > middleStart)
            await WriteAsync(
                middleStart,
                source.Slice((int)(middleStart - offsetBytes), (int)(middleEnd - middleStart)),
                0,
                forceUnitAccess: false,
                cancellationToken).ConfigureAwait(false);
        if (tail)
        {
            var lastBlock = (end - 1) / B * B;
            await PatchBlockAsync(lastBlock, 0, source[(int)(lastBlock - offsetBytes)..], cancellationToken)
                .ConfigureAwait(false);
        }
        if (forceUnitAccess) await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Trims a sector-aligned range: the partial blocks' sectors are written with zeroes.</summary>
    private async ValueTask TrimSectorsAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken)
    {
        CheckSectorRange(offsetBytes, lengthBytes, CapacityBytes, nameof(lengthBytes));
        var end = offsetBytes + lengthBytes;
        var (head, tail, middleStart, middleEnd) = SplitAtBlocks(offsetBytes, end);
        if (head)
        {
            var firstBlock = offsetBytes / B * B;
            var headEnd = Math.Min(end, firstBlock + B);
            await PatchBlockAsync(
                firstBlock,
                (int)(offsetBytes - firstBlock),
                ZeroBlock.AsMemory(0, (int)(headEnd - offsetBytes)),
                cancellationToken).ConfigureAwait(false);
        }
        if (middleEnd > middleStart)
            await TrimAsync(middleStart, middleEnd - middleStart, 0, cancellationToken).ConfigureAwait(false);
        if (tail)
        {
            var lastBlock = (end - 1) / B * B;
            await PatchBlockAsync(lastBlock, 0, ZeroBlock.AsMemory(0, (int)(end - lastBlock)), cancellationToken)
                .ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Reads the block at <paramref name="blockOffset"/>, copies <paramref name="sectors"/> into it at
    /// <paramref name="inBlock"/> and writes it back, all under the stripe's lock.
    /// </summary>
    private async ValueTask PatchBlockAsync(
        long blockOffset,
        int inBlock,
        ReadOnlyMemory<byte> sectors,
        CancellationToken cancellationToken)
    {
        var stripe = blockOffset / Geometry.StripeDataBytes;
        var inStripe = (int)(blockOffset - stripe * Geometry.StripeDataBytes);
        var block = ArrayPool<byte>.Shared.Rent(B);
        try
        {
            using LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false);
            ThrowIfFailed();
            await ReadSlowAsync(locked.Scratch, stripe, inStripe, block.AsMemory(0, B), cancellationToken)
                .ConfigureAwait(false);
            sectors.CopyTo(block.AsMemory(inBlock));
            await WriteLockedStripeAsync(
                locked.Scratch, stripe, inStripe, block.AsMemory(0, B), 0, cancellationToken).ConfigureAwait(false);
        }
        finally { ArrayPool<byte>.Shared.Return(block); }
    }

    /// <summary>
    /// Checks a sector-aligned request: offset and length multiples of <see cref="SectorBytes"/>, the length at most
    /// <paramref name="maxLengthBytes"/>, inside the volume. A bad length names <paramref name="lengthName"/> when
    /// it is refused on its own, and the offset's range when it runs past the end (as the block-aligned checks do).
    /// </summary>
    private void CheckSectorRange(long offsetBytes, long lengthBytes, long maxLengthBytes, string lengthName)
    {
        CheckUsable();
        if (offsetBytes < 0 || offsetBytes % SectorBytes != 0 || offsetBytes >= CapacityBytes)
            throw new ArgumentOutOfRangeException(
                nameof(offsetBytes),
                offsetBytes,
                $"offset must be a multiple of {SectorBytes} in 0..{CapacityBytes - SectorBytes}.");
        if (lengthBytes < 1 || lengthBytes % SectorBytes != 0 || lengthBytes > maxLengthBytes)
            throw new ArgumentOutOfRangeException(
                lengthName,
                lengthBytes,
                $"length must be a multiple of {SectorBytes} in {SectorBytes}..{maxLengthBytes} bytes.");
        if (lengthBytes > CapacityBytes - offsetBytes)
            throw new ArgumentOutOfRangeException(
                nameof(lengthBytes),
                lengthBytes,
                $"length must be a multiple of {SectorBytes} in {SectorBytes}..{CapacityBytes - offsetBytes} bytes at offset {offsetBytes}.");
    }
}
