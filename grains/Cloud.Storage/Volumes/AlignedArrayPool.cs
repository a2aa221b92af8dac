using System.Buffers;
using System.Numerics;

namespace Cloud.Storage.Volumes;

/// <summary>
/// An <see cref="ArrayPool{T}"/> of I/O buffers whose data starts on a cache-line boundary (why: see
/// <see cref="AlignedArrays"/>). Arrays of <see cref="MinimumPooledBytes"/> or more are pinned and carry up to 56 spare
/// bytes, and their data starts at <see cref="Offset"/>: the first element from <see cref="AlignedIndex"/> on that sits
/// on a boundary (an array that cannot move keeps it). Smaller requests go to <see cref="ArrayPool{T}.Shared"/>, and so
/// do their returns (by length), with their data at <see cref="AlignedIndex"/>; so callers may use one pool for every
/// buffer they rent.
/// </summary>
/// <remarks>
/// Lengths (with the spare bytes) are rounded up to one of eight sizes between consecutive powers of two (at most an
/// eighth more than asked), so that a 1 MiB read and its 32-byte reply header take 1.125 MiB rather than the 2 MiB of
/// <see cref="ArrayPool{T}.Shared"/>. At most <see cref="MaxRetainedBytes"/> of free arrays are kept; beyond that a
/// returned array is left to the garbage collector.
/// </remarks>
public sealed class AlignedArrayPool : ArrayPool<byte>
{
    /// <summary>Arrays from 4 KiB up come from this pool by default.</summary>
    public const int DefaultMinimumPooledBytes = 4096;

    /// <summary>The default bound on retained free arrays: 64 MiB.</summary>
    public const long DefaultMaxRetainedBytes = 64L << 20;

    private readonly FreeArrays _free;

    // Addresses are multiples of 8, so the data moves at most this far past AlignedIndex.
    private const int MaxPadBytes = AlignedArrays.Alignment - 8;

    /// <summary>A pool with no header in front of the data.</summary>
    public static AlignedArrayPool Default { get; } = new(0);

    /// <summary>Creates a pool.</summary>
    /// <param name="alignedIndex">Where the data would start without alignment: 0, or the size of a header the caller
    /// writes in front of it.</param>
    /// <param name="minimumPooledBytes">Requests whose size rounds up to at least this many bytes are served here: a
    /// power of two, 32 or more.</param>
    /// <param name="maxRetainedBytes">The bound on free arrays kept.</param>
    public AlignedArrayPool(
        int alignedIndex,
        int minimumPooledBytes = DefaultMinimumPooledBytes,
        long maxRetainedBytes = DefaultMaxRetainedBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(alignedIndex);
        ArgumentOutOfRangeException.ThrowIfLessThan(minimumPooledBytes, Math.Max(32, alignedIndex + 1));
        if (!BitOperations.IsPow2(minimumPooledBytes))
            throw new ArgumentOutOfRangeException(
                nameof(minimumPooledBytes), minimumPooledBytes, "must be a power of two");
        AlignedIndex = alignedIndex;
        MinimumPooledBytes = minimumPooledBytes;
        _free = new FreeArrays(maxRetainedBytes);
    }

    /// <summary>The room kept in front of the data (for a header).</summary>
    public int AlignedIndex { get; }

    /// <summary>The smallest array this pool serves itself.</summary>
    public int MinimumPooledBytes { get; }

    /// <summary>The bound on the bytes of free arrays kept.</summary>
    public long MaxRetainedBytes => _free.MaxRetainedBytes;

    /// <summary>Bytes of free arrays held now.</summary>
    public long RetainedBytes => _free.RetainedBytes;

    /// <summary>
    /// The length of the array this pool hands out for <paramref name="minimumLength"/> bytes (before the pool's
    /// minimum applies): a power of two up to 4 KiB, and above that the next multiple of an eighth of the power of two
    /// below it.
    /// </summary>
    public static int SizeClass(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        if (minimumLength <= 4096) return (int)Math.Max(1u, BitOperations.RoundUpToPowerOf2((uint)minimumLength));
        var step = (int)(BitOperations.RoundUpToPowerOf2((uint)minimumLength) / 16);
        var rounded = ((long)minimumLength + step - 1) / step * step;
        return rounded > Array.MaxLength ? minimumLength : (int)rounded;
    }

    /// <inheritdoc />
    public override byte[] Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        // ArrayPool.Shared rounds up to a power of two, so what it hands out stays under the minimum and comes back there.
        if (BitOperations.RoundUpToPowerOf2((uint)minimumLength) < (uint)MinimumPooledBytes)
            return ArrayPool<byte>.Shared.Rent(minimumLength);
        var withPad = (int)Math.Min(Array.MaxLength, (long)minimumLength + MaxPadBytes);
        var length = Math.Max(SizeClass(withPad), MinimumPooledBytes);
        return _free.TryTake(length, out var array)
            ? array
            : GC.AllocateUninitializedArray<byte>(length, pinned: true);
    }

    /// <summary>
    /// Where the data of an array rented here starts: <see cref="AlignedIndex"/> moved forward to the next cache-line
    /// boundary in a pooled (pinned) array, <see cref="AlignedIndex"/> itself in a small one. An array rented for
    /// <c>n</c> bytes has at least <c>n - AlignedIndex</c> bytes from there.
    /// </summary>
    public int Offset(byte[] array)
    {
        ArgumentNullException.ThrowIfNull(array);
        return array.Length < MinimumPooledBytes
            ? AlignedIndex
            : AlignedIndex + AlignedArrays.BytesToBoundary(array, AlignedIndex);
    }

    /// <inheritdoc />
    public override void Return(byte[] array, bool clearArray = false)
    {
        ArgumentNullException.ThrowIfNull(array);
        if (array.Length < MinimumPooledBytes)
        {
            ArrayPool<byte>.Shared.Return(array, clearArray);
            return;
        }
        if (array.Length != Math.Max(SizeClass(array.Length), MinimumPooledBytes))
            throw new ArgumentException(
                $"a {array.Length}-byte array was not rented from this pool (its sizes are {nameof(SizeClass)} values)",
                nameof(array));
        if (clearArray) Array.Clear(array);
        _free.TryKeep(array);
    }
}
