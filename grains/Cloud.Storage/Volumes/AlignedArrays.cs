using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Cloud.Storage.Volumes;

/// <summary>
/// Byte arrays that stay put (on the pinned object heap) with a chosen element on a cache-line boundary, for buffers
/// the kernel copies to or from: payloads received from sockets, written to member files, read into from the page
/// cache.
/// </summary>
/// <remarks>
/// <para>
/// The kernel's copy between user memory and the page cache or a socket is sensitive to where the user buffer starts
/// within a cache line. Measured on this project's test machines (AMD EPYC, <c>bench/copy-alignment.sh</c>): a
/// <c>pread</c> of cached file pages into a buffer 8, 16 or 24 bytes past a 64-byte boundary costs 2 to 5 times the CPU
/// of the same read into an aligned buffer, and a <c>pwrite</c> from such a buffer 1.2-1.3 times. A .NET array's
/// elements start 16 bytes past its object, which itself is only 8-byte aligned, so an ordinary array lands on one of
/// eight offsets by chance: before these arrays, Cloud's member writes copied into the page cache at 1.17-1.47 times
/// nbdkit's CPU per byte, and at 0.99-1.04 times after in two profiles (1.16 in a later one; BENCHMARKS.md, "Buffers
/// on cache-line boundaries" and session 35).
/// </para>
/// <para>
/// .NET offers no aligned array allocation, so <see cref="Allocate"/> steers the pinned heap's
/// allocator, which places objects one after another: it allocates an empty probe array to learn where the next object
/// will go, pads with a small spacer array so that the next allocation's chosen element falls on a boundary, allocates,
/// and checks. Another thread allocating pinned memory in between, a reused free gap, or a large array placed in a
/// fresh region while the small probe went to the old one can spoil the prediction: it then pads behind the array that
/// missed with a spacer as large as the array and tries once more; after that it takes plain allocations as they come
/// (each on one of eight offsets by chance), a bounded number of times, and otherwise returns an unaligned array,
/// which is slower but just as correct. Probes and small spacers (a few dozen bytes each) are kept, not collected, so
/// that later probes do not fall into their gaps; every miss leaves an array's worth of garbage, or two. Callers keep
/// what they get (pools), so this happens while they fill. Where arrays of the same size are dropped and allocated
/// again and again, the gaps they leave defeat the steering more often: a test with two arrays in three dropped found
/// a third to two fifths of the 340 KiB to 1.1 MiB arrays unaligned, against none with all kept.
/// </para>
/// </remarks>
public static class AlignedArrays
{
    /// <summary>The boundary chosen elements are placed on: one cache line.</summary>
    public const int Alignment = 64;

    /// <summary>Attempts before <see cref="Allocate"/> settles for an unaligned array.</summary>
    public const int MaxAttempts = 16;

    // A byte[] is its object header (8 bytes), method table pointer (8) and length (8 with padding) followed by its
    // elements, rounded up to 8 bytes: an empty one takes 24 bytes, and objects allocated one after another begin
    // that far apart.
    private const int EmptyArrayBytes = 24;

    // Probes and small spacers, kept rather than collected: the gaps they would leave are where the next probe would
    // go while a large array goes elsewhere, which spoils every later prediction. A few dozen bytes each, and
    // allocations are rare, but bounded all the same.
    private const int MaxKeptSmallObjects = 16384;
    private static readonly List<byte[]> s_kept = [];
    private static readonly Lock s_gate = new();
    private static long s_unaligned;

    /// <summary>Arrays handed out unaligned because every attempt missed (for diagnostics and tests).</summary>
    public static long UnalignedCount => Interlocked.Read(ref s_unaligned);

    /// <summary>
    /// A pinned array of exactly <paramref name="length"/> bytes whose element <paramref name="alignedIndex"/> sits on
    /// an <see cref="Alignment"/>-byte boundary (almost always; see the remarks on <see cref="AlignedArrays"/>).
    /// </summary>
    /// <param name="length">The array's length.</param>
    /// <param name="alignedIndex">The element to align: 0 for the data itself, or the size of a header reserved in
    /// front of it.</param>
    /// <param name="zeroed">Whether the elements must be zero; otherwise their contents are unspecified.</param>
    public static byte[] Allocate(int length, int alignedIndex = 0, bool zeroed = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfNegative(alignedIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(alignedIndex, Math.Max(0, length - 1));
        // One steered allocation at a time: two threads interleaving their probes, spacers and arrays would spoil
        // each other's predictions (pools fill from many threads at once). Allocations are rare (pools keep arrays).
        lock (s_gate) return AllocateSteered(length, alignedIndex, zeroed);
    }

    private static byte[] AllocateSteered(int length, int alignedIndex, bool zeroed)
    {
        byte[]? candidate = null;
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            // From the third attempt on, steering has missed twice (the heap is fragmented, and arrays go into gaps
            // that collected ones left): take what comes, each on one of eight offsets by chance.
            if (attempt == 0)
            {
                // Where the next pinned array's elements should begin: one empty array's size past this probe's. A
                // spacer then brings the chosen element onto a boundary (an object is at least an empty array's size,
                // so a gap smaller than that is widened by a whole line).
                var probe = GC.AllocateUninitializedArray<byte>(0, pinned: true);
                Keep(probe);
                var gap = Gap(ElementAddress(probe) + EmptyArrayBytes + alignedIndex);
                if (gap > 0) Spacer(gap < EmptyArrayBytes ? gap + Alignment - EmptyArrayBytes : gap - EmptyArrayBytes);
            }
            else if (attempt == 1)
            {
                // The first candidate missed: a large array may go where small ones do not (a fresh region of the heap,
                // say), so the spacer now is as large as the array itself, follows the same route, and is sized so
                // that the array after it, expected right behind it, is aligned.
                var spacerAt = ElementAddress(candidate!) + ObjectBytes(length);
                Spacer(length + Gap(spacerAt + ObjectBytes(length) + alignedIndex));
            }
            // Uninitialized even when zeroes are wanted: the runtime places a zeroed pinned array elsewhere than the
            // probe predicts, so it is cleared here instead.
            candidate = GC.AllocateUninitializedArray<byte>(length, pinned: true);
            if (!IsAligned(candidate, alignedIndex)) continue;
            if (zeroed) Array.Clear(candidate);
            return candidate;
        }
        Interlocked.Increment(ref s_unaligned);
        if (zeroed) Array.Clear(candidate!);
        return candidate!;
    }

    // Bytes from the address up to the next boundary (a multiple of 8, since objects are 8-byte aligned).
    private static int Gap(long address) => (int)((Alignment - address % Alignment) % Alignment);

    // The bytes a byte[] of this length occupies, from its header to the next object's header.
    private static long ObjectBytes(int length) => (EmptyArrayBytes + (long)length + 7) & ~7L;

    private static void Spacer(int length)
    {
        var spacer = GC.AllocateUninitializedArray<byte>(length, pinned: true);
        if (length < Alignment * 2) Keep(spacer);
    }

    private static void Keep(byte[] small)
    {
        if (s_kept.Count < MaxKeptSmallObjects) s_kept.Add(small);
    }

    /// <summary>
    /// Bytes from element <paramref name="index"/> of <paramref name="array"/> to the next boundary (0 when it is on
    /// one). Only meaningful for arrays that cannot move.
    /// </summary>
    public static int BytesToBoundary(byte[] array, int index) => Gap(ElementAddress(array) + index);

    /// <summary>
    /// True when element <paramref name="index"/> of <paramref name="array"/> sits on an <see cref="Alignment"/>-byte
    /// boundary now. Only meaningful for arrays that cannot move (pinned ones, such as those from
    /// <see cref="Allocate"/>).
    /// </summary>
    public static bool IsAligned(byte[] array, int index) => (ElementAddress(array) + index) % Alignment == 0;

    private static unsafe long ElementAddress(byte[] array) =>
        (long)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
}
