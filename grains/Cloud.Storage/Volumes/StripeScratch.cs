using System.Collections.Concurrent;

namespace Cloud.Storage.Volumes;

/// <summary>
/// The working memory of one stripe operation: an image of every member's chunk slot (chunk then
/// metadata sector) and the small arrays the planner needs. Pooled per volume with a byte budget,
/// so the hot path does not allocate.
/// </summary>
internal sealed class StripeScratch
{
    public StripeScratch(int memberCount, int slotBytes, int blocksPerChunk, int dataCount, int slotCount)
    {
        Buffer = new byte[memberCount * slotBytes];
        Tasks = new ValueTask<bool>[memberCount * 2];
        Usable = new bool[memberCount];
        SlotMember = new int[slotCount];
        First = new int[dataCount];
        End = new int[dataCount];
        WriteFirst = new int[memberCount];
        WriteEnd = new int[memberCount];
        Bad = new bool[memberCount * blocksPerChunk];
        Members = new Memory<byte>[slotCount];
        Data = new ReadOnlyMemory<byte>[dataCount];
    }

    public readonly byte[] Buffer;
    public readonly ValueTask<bool>[] Tasks;
    public readonly bool[] Usable;
    public readonly int[] SlotMember;
    public readonly int[] First;
    public readonly int[] End;
    public readonly int[] WriteFirst;
    public readonly int[] WriteEnd;
    public readonly bool[] Bad;
    public readonly Memory<byte>[] Members;
    public readonly ReadOnlyMemory<byte>[] Data;
}

/// <summary>A bounded pool of <see cref="StripeScratch"/>; beyond the bound, scratches are allocated and dropped.</summary>
internal sealed class StripeScratchPool(Func<StripeScratch> factory, int maxRetained)
{
    private readonly ConcurrentBag<StripeScratch> _items = [];
    private int _count;

    public StripeScratch Rent()
    {
        if (_items.TryTake(out StripeScratch? s))
        {
            Interlocked.Decrement(ref _count);
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
