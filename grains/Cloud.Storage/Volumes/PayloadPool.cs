using System.Runtime.CompilerServices;

namespace Cloud.Storage.Volumes;

/// <summary>
/// Write payload arrays of exact lengths, recycled: a front end that receives a write into an array of its own
/// (the NBD server) rents it here, and the volume that takes the array over (<see cref="IBufferOwningVolume"/>) gives
/// it back once it holds no copy of it any more. Reused arrays are already mapped, so receiving into them does not
/// fault in fresh zeroed pages (a third of the receive's cost for a 1 MiB payload) or feed the garbage collector.
/// </summary>
/// <remarks>
/// An array is returned only by code that knows nothing else references it; an array that is never returned is simply
/// collected. At most <see cref="MaxRetainedBytes"/> are kept. Returning an array twice would hand it to two renters at
/// once, each overwriting the other's payload: debug builds remember every array given back until it is rented again
/// (or collected) and throw <see cref="InvalidOperationException"/> on a second return. New arrays of
/// <see cref="MinAlignedBytes"/> or more come from <see cref="AlignedArrays"/>: pinned, with their first byte on a
/// cache-line boundary, which the kernel's copies into the member files' page cache need to run at full speed.
/// </remarks>
public sealed class PayloadPool
{
    /// <summary>The pool the NBD server and the silo's front end share.</summary>
    public static PayloadPool Shared { get; } = new(DefaultMaxRetainedBytes);

    /// <summary>
    /// Payloads from this size up are allocated on a cache-line boundary (<see cref="AlignedArrays"/>). Smaller ones
    /// are allocated as before: the gain was measured on 1 MiB payloads, and a small payload the pool has no array for
    /// would pay the pinned heap's slower allocation on the random-write path.
    /// </summary>
    public const int MinAlignedBytes = 64 * 1024;

    /// <summary>The default bound on retained bytes: 64 MiB, sixteen 4 MiB payloads.</summary>
    public const long DefaultMaxRetainedBytes = 64L << 20;

    private readonly FreeArrays _free;

#if DEBUG
    // Arrays given back and not rented since, kept or dropped: weak keys, so a dropped array is still collected.
    private readonly ConditionalWeakTable<byte[], object> _returned = new();
#endif

    /// <summary>Creates a pool keeping at most <paramref name="maxRetainedBytes"/> bytes of free arrays.</summary>
    public PayloadPool(long maxRetainedBytes)
    {
        _free = new FreeArrays(maxRetainedBytes);
    }

    /// <summary>The bound on the bytes of free arrays kept.</summary>
    public long MaxRetainedBytes => _free.MaxRetainedBytes;

    /// <summary>Bytes of free arrays held now.</summary>
    public long RetainedBytes => _free.RetainedBytes;

    /// <summary>An array of exactly <paramref name="lengthBytes"/> bytes; its contents are unspecified.</summary>
    public byte[] Rent(int lengthBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthBytes);
        if (_free.TryTake(lengthBytes, out var array))
        {
#if DEBUG
            _returned.Remove(array);
#endif
            return array;
        }
        return lengthBytes >= MinAlignedBytes
            ? AlignedArrays.Allocate(lengthBytes)
            : GC.AllocateUninitializedArray<byte>(lengthBytes);
    }

    /// <summary>Takes back an array nobody else references any more; kept while the pool is under its bound.</summary>
    public void Return(byte[] array)
    {
        ArgumentNullException.ThrowIfNull(array);
        if (array.Length == 0) return;
#if DEBUG
        if (!_returned.TryAdd(array, array))
            throw new InvalidOperationException(
                $"a {array.Length}-byte payload array was returned to the pool twice without being rented in between; the second return would hand it to two renters at once.");
#endif
        _free.TryKeep(array);
    }
}
