using System.Buffers;
using System.Runtime.InteropServices;

namespace Cloud.Testing;

/// <summary>
/// Intel ISA-L's RAID functions (Debian <c>libisal-dev</c>, <c>libisal.so.2</c>): an independent
/// implementation of the same P and Q, used as a test oracle (Cloud.Storage.Tests) and as the benchmark peer
/// (Cloud.Bench), declared once here for both.
/// </summary>
/// <remarks>
/// From <c>isa-l/raid.h</c>: <c>array</c> holds the source pointers followed by the destination(s)
/// (P, then Q for <c>pq_gen</c>); <c>vects</c> counts sources and destinations; pointers must be
/// 32-byte aligned; <c>pq_gen</c>'s length must be a multiple of 32. Both return 0 on success.
/// </remarks>
public static unsafe partial class IsaLRaid
{
    /// <summary>The shared library's soname, as Debian installs it.</summary>
    public const string Library = "libisal.so.2";

    /// <summary>
    /// The pointer alignment the library requires of sources and destinations; 64 also suits AVX-512.
    /// </summary>
    public const int AlignmentBytes = 64;

    /// <summary>pq_gen processes whole 32-byte vectors; lengths must be a multiple of this.</summary>
    public const int PqLengthMultipleBytes = 32;

    /// <summary>XOR parity: array[vects-1] = XOR of array[0..vects-2].</summary>
    [LibraryImport(Library, EntryPoint = "xor_gen")]
    public static partial int XorGen(int vects, int len, void** array);

    /// <summary>P and Q: array[vects-2] = P, array[vects-1] = Q over array[0..vects-3].</summary>
    [LibraryImport(Library, EntryPoint = "pq_gen")]
    public static partial int PqGen(int vects, int len, void** array);

    /// <summary>True when the library can be loaded here.</summary>
    public static bool IsAvailable()
    {
        if (!NativeLibrary.TryLoad(Library, out var handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    }
}

/// <summary>
/// A native buffer aligned to at least <see cref="IsaLRaid.AlignmentBytes"/>, usable both as a pointer (for
/// ISA-L) and as <see cref="Memory{T}"/> (for our API), so that both work on the very same bytes.
/// </summary>
public sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    private byte* pointer;
    private readonly int lengthBytes;

    /// <param name="lengthBytes">The buffer's length.</param>
    /// <param name="alignmentBytes">A power of two, at least <see cref="IsaLRaid.AlignmentBytes"/>; 4096 gives the page
    /// alignment of direct I/O buffers.</param>
    public AlignedBuffer(int lengthBytes, int alignmentBytes = IsaLRaid.AlignmentBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthBytes);
        if (alignmentBytes < IsaLRaid.AlignmentBytes || !int.IsPow2(alignmentBytes))
            throw new ArgumentOutOfRangeException(
                nameof(alignmentBytes), alignmentBytes, $"allowed: a power of two >= {IsaLRaid.AlignmentBytes}.");
        this.lengthBytes = lengthBytes;
        // A zero-byte request still gets a real, aligned allocation so that Pointer is never null.
        pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(lengthBytes, 1), (nuint)alignmentBytes);
        NativeMemory.Clear(pointer, (nuint)lengthBytes);
    }

    public byte* Pointer => pointer != null ? pointer : throw new ObjectDisposedException(nameof(AlignedBuffer));

    public int LengthBytes => lengthBytes;

    public override Span<byte> GetSpan() => new(Pointer, lengthBytes);

    // Native memory never moves, so pinning is a no-op.
    public override MemoryHandle Pin(int elementIndex = 0) => new(Pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        if (pointer != null)
        {
            NativeMemory.AlignedFree(pointer);
            pointer = null;
        }
    }
}
