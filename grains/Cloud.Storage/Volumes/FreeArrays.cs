using System.Collections.Concurrent;
using System.Diagnostics;

namespace Cloud.Storage.Volumes;

/// <summary>
/// Free byte arrays kept for reuse, one stack per length, under a bound on the bytes kept: what
/// <see cref="PayloadPool"/> and <see cref="AlignedArrayPool"/> hold between a return and the next rent.
/// Thread-safe; an array offered past the bound is not kept (the garbage collector takes it). Each length's stack is
/// a <see cref="Stack{T}"/> under its own lock rather than a <see cref="ConcurrentStack{T}"/>, which allocates a node
/// for every push: once warm, keeping and taking allocate nothing (one of each per NBD request).
/// </summary>
internal sealed class FreeArrays
{
    private readonly ConcurrentDictionary<int, Stack<byte[]>> _free = new();
    private long _retainedBytes;

    public FreeArrays(long maxRetainedBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxRetainedBytes);
        MaxRetainedBytes = maxRetainedBytes;
    }

    /// <summary>The bound on the bytes of free arrays kept.</summary>
    public long MaxRetainedBytes { get; }

    /// <summary>Bytes of free arrays held now.</summary>
    public long RetainedBytes => Interlocked.Read(ref _retainedBytes);

    /// <summary>Takes a kept array of exactly <paramref name="length"/> bytes, if there is one.</summary>
    public bool TryTake(int length, out byte[] array)
    {
        if (_free.TryGetValue(length, out var stack))
        {
            bool popped;
            lock (stack) popped = stack.TryPop(out array!);
            if (popped)
            {
                var retained = Interlocked.Add(ref _retainedBytes, -array.Length);
                Debug.Assert(retained >= 0, "more bytes taken from the free arrays than were kept");
                return true;
            }
        }
        array = null!;
        return false;
    }

    /// <summary>Keeps <paramref name="array"/> while under the bound; false when it was left to the collector.</summary>
    public bool TryKeep(byte[] array)
    {
        if (Interlocked.Add(ref _retainedBytes, array.Length) > MaxRetainedBytes)
        {
            Interlocked.Add(ref _retainedBytes, -array.Length);
            return false;
        }
        var stack = _free.GetOrAdd(array.Length, static _ => new Stack<byte[]>());
        lock (stack) stack.Push(array);
        return true;
    }
}
