using System.Collections.Concurrent;
using System.Diagnostics;

namespace Cloud.Storage.Volumes;

/// <summary>
/// The working memory of one stripe operation: an image of every member's chunk slot (chunk then
/// metadata sector) and the small per-member and per-slot arrays the data path fills in. Pooled per
/// volume with a byte budget, so the hot path does not allocate.
/// </summary>
internal sealed class StripeScratch
{
    public StripeScratch(int memberCount, int slotBytes, int blocksPerChunk, int dataCount, int slotCount)
    {
        Buffer = AlignedArrays.Allocate(memberCount * slotBytes, zeroed: true);
        Tasks = new ValueTask<bool>[memberCount * 2];
        Usable = new bool[memberCount];
        SlotMember = new int[slotCount];
        First = new int[dataCount];
        End = new int[dataCount];
        ReadFrom = new int[dataCount];
        WriteFirst = new int[memberCount];
        WriteEnd = new int[memberCount];
        Bad = new bool[memberCount * blocksPerChunk];
        Members = new Memory<byte>[slotCount];
        Data = new ReadOnlyMemory<byte>[dataCount];
    }

    /// <summary>Member m's image at <c>m * slotBytes</c>: its chunk, then its metadata sector.</summary>
    public readonly byte[] Buffer;

    /// <summary>Member I/Os in flight (two per member at most: rows and metadata sector).</summary>
    public readonly ValueTask<bool>[] Tasks;

    /// <summary>Per member: takes part in this stripe (set by ResetScratch, cleared when a read fails it).</summary>
    public readonly bool[] Usable;

    /// <summary>Per logical slot (data slots, then P and Q): the member that holds it in this stripe.</summary>
    public readonly int[] SlotMember;

    /// <summary>Per data slot: the first block row the request touches.</summary>
    public readonly int[] First;

    /// <summary>
    /// Per data slot: the end (exclusive) of the block rows the request touches; equal to First when none.
    /// </summary>
    public readonly int[] End;

    /// <summary>
    /// Per data slot, on the optimistic read: the member the chunk was read from (a mirror may serve it from any copy).
    /// </summary>
    public readonly int[] ReadFrom;

    /// <summary>Per member, for a mirror repair: the first row to rewrite, or -1.</summary>
    public readonly int[] WriteFirst;

    /// <summary>Per member, for a mirror repair: the end (exclusive) of the rows to rewrite.</summary>
    public readonly int[] WriteEnd;

    /// <summary>
    /// Per member and block row (<c>m * blocksPerChunk + row</c>): the block failed its checksum or is to be rewritten.
    /// </summary>
    public readonly bool[] Bad;

    /// <summary>Per logical slot: that slot's chunk image, for reconstruction.</summary>
    public readonly Memory<byte>[] Members;

    /// <summary>
    /// Per data slot: the rows parity is computed from (the images, or the caller's buffer on a full-stripe write;
    /// cleared after that).
    /// </summary>
    public readonly ReadOnlyMemory<byte>[] Data;
}

/// <summary>
/// A bounded pool of <see cref="StripeScratch"/>; beyond the bound, scratches are allocated and dropped.
/// </summary>
internal sealed class StripeScratchPool(Func<StripeScratch> factory, int maxRetained)
{
    private readonly ConcurrentBag<StripeScratch> _items = [];
    private int _count;

    public StripeScratch Rent()
    {
        if (_items.TryTake(out StripeScratch? s))
        {
            var left = Interlocked.Decrement(ref _count);
            Debug.Assert(left >= 0, "more scratches taken from the pool than were put in");
            return s;
        }
        return factory();
    }

    public void Return(StripeScratch scratch)
    {
        if (Interlocked.Increment(ref _count) <= maxRetained) _items.Add(scratch);
        else Interlocked.Decrement(ref _count);
    }
}
