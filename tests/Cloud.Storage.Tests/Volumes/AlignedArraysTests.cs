using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Cloud.Storage.Volumes;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// Buffers the kernel copies to and from start on a cache-line boundary (the copy costs up to five times as much from
/// some offsets: AlignedArrays' remarks). Without the steering an array lands on one of eight offsets by chance, so
/// the share of aligned arrays below would be about an eighth. The class runs alone (its collection disables
/// parallelization): another test allocating pinned memory at the same moment spoils the allocator's predictions,
/// and in one CI run of the whole suite that left 23 of 32 arrays aligned, below the share asked for.
/// </summary>
[Collection(nameof(AlignedArraysTests))]
public sealed class AlignedArraysTests
{
    // Something else in the process allocating pinned memory at the same moment can still spoil an allocation's
    // prediction; the allocator then tries again, and gives up (unaligned, still correct) only after several misses in
    // a row. A share this high cannot come about by chance: eight offsets are equally likely for an ordinary array.
    private const double RequiredAlignedShare = 0.75;

    [Theory]
    [InlineData(4096, 0)]
    [InlineData(1 << 20, 0)]
    [InlineData(278528, 0)]
    [InlineData(4096 + 32, 32)]
    [InlineData((1 << 20) + 32, 32)]
    [InlineData(1000, 16)]
    public void Allocate_PutsTheChosenElementOnACacheLine(int length, int alignedIndex)
    {
        const int count = 40;
        var aligned = 0;
        for (var i = 0; i < count; i++)
        {
            var a = AlignedArrays.Allocate(length, alignedIndex, zeroed: i % 2 == 0);
            Assert.Equal(length, a.Length);
            if ((Address(a) + alignedIndex) % AlignedArrays.Alignment == 0) aligned++;
        }
        Assert.True(
            aligned >= RequiredAlignedShare * count,
            $"{aligned} of {count} arrays of {length} bytes had element {alignedIndex} on a 64-byte boundary");
    }

    [Fact]
    public void Allocate_Zeroed_GivesAPinnedArray()
    {
        var a = AlignedArrays.Allocate(65536, zeroed: true);
        var before = Address(a);
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        Assert.Equal(before, Address(a));
    }

    [Fact]
    public void Allocate_Zeroed_GivesZeroes_WhereCollectedArraysLeftGarbage()
    {
        // The pinned heap is not compacted: a collected array's memory is handed out again as it was, and arrays are
        // placed uninitialized (the steering needs that), so only the clear stands between a zeroed array and the
        // bytes of the last one that lived there.
        for (var round = 0; round < 8; round++)
        {
            FillAndDropPinned(count: 32, length: 65536, value: 0xA5);
            GC.Collect(2, GCCollectionMode.Forced, blocking: true);
            for (var i = 0; i < 4; i++)
            {
                var a = AlignedArrays.Allocate(65536, zeroed: true);
                var dirty = a.AsSpan().IndexOfAnyExcept((byte)0);
                Assert.True(dirty < 0, $"round {round}: byte {dirty} of a zeroed array is {(dirty < 0 ? 0 : a[dirty])}");
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void FillAndDropPinned(int count, int length, byte value)
    {
        for (var i = 0; i < count; i++)
            GC.AllocateUninitializedArray<byte>(length, pinned: true).AsSpan().Fill(value);
    }

    [Fact]
    public void Allocate_BadArguments_AreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => AlignedArrays.Allocate(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => AlignedArrays.Allocate(4096, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => AlignedArrays.Allocate(4096, 4096));
    }

    [Fact]
    public void PayloadPool_NewLargeArrays_AreAligned()
    {
        var pool = new PayloadPool(0);
        const int count = 32;
        var aligned = 0;
        for (var i = 0; i < count; i++)
            if (Address(pool.Rent(1 << 20)) % AlignedArrays.Alignment == 0) aligned++;
        Assert.True(aligned >= RequiredAlignedShare * count, $"{aligned} of {count} payload arrays aligned");
    }

    [Theory]
    [InlineData(32, (1 << 20) + 32, (1 << 20) + (1 << 17))]
    [InlineData(32, 4096 + 32, 4608)]
    [InlineData(0, 65536, 65536 + 8192)]
    public void Pool_DataStartsOnACacheLine_WithTheRoomAskedFor(int reserve, int request, int classBytes)
    {
        var pool = new AlignedArrayPool(reserve);
        for (var i = 0; i < 16; i++)
        {
            var a = pool.Rent(request);
            Assert.Equal(classBytes, a.Length); // the next eighth above, not the next power of two
            var at = pool.Offset(a);
            Assert.InRange(at, reserve, reserve + 56);
            Assert.Equal(0, (Address(a) + at) % AlignedArrays.Alignment);
            Assert.True(a.Length - at >= request - reserve, $"{a.Length - at} bytes from the data's start");
        }
    }

    [Fact]
    public void Pool_TakesArraysBack_AndHandsThemOutAgain()
    {
        var pool = new AlignedArrayPool(32, maxRetainedBytes: 8L << 20);
        var a = pool.Rent((1 << 20) + 32);
        pool.Return(a);
        Assert.Equal(a.Length, pool.RetainedBytes);
        Assert.Same(a, pool.Rent((1 << 20) + 1000)); // the same size class
        Assert.Equal(0, pool.RetainedBytes);
    }

    [Fact]
    public void Pool_BeyondItsBound_DropsReturnedArrays()
    {
        var pool = new AlignedArrayPool(0, maxRetainedBytes: 8192);
        var arrays = new[] { pool.Rent(3000), pool.Rent(3000), pool.Rent(3000) };
        foreach (var a in arrays) pool.Return(a);
        Assert.Equal(8192, pool.RetainedBytes);
    }

    [Fact]
    public void Pool_SmallRequests_GoToTheSharedPool_AndComeBackThere()
    {
        var pool = new AlignedArrayPool(32);
        var small = pool.Rent(100);
        Assert.True(small.Length < pool.MinimumPooledBytes);
        Assert.Equal(32, pool.Offset(small));
        pool.Return(small);
        Assert.Equal(0, pool.RetainedBytes);
        // A request just under the minimum that ArrayPool.Shared would round up to it is this pool's own.
        var edge = pool.Rent(4000);
        Assert.Equal(4096, edge.Length);
        pool.Return(edge);
        Assert.Equal(4096, pool.RetainedBytes);
    }

    [Fact]
    public void Pool_AnArrayItDidNotHandOut_IsRefusedWithOneLine()
    {
        var pool = new AlignedArrayPool(0);
        var e = Assert.Throws<ArgumentException>(() => pool.Return(new byte[5000]));
        Assert.Contains("was not rented from this pool", e.Message);
        Assert.Equal(0, pool.RetainedBytes);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(4096, 4096)]
    [InlineData(4097, 4608)]
    [InlineData(1 << 20, 1 << 20)]
    [InlineData((1 << 20) + 1, (1 << 20) + (1 << 17))]
    [InlineData((4 << 20) + 32, (4 << 20) + (1 << 19))]
    public void SizeClass_IsAtMostAnEighthAboveTheRequest(int request, int expected) =>
        Assert.Equal(expected, AlignedArrayPool.SizeClass(request));

    [Fact]
    public void Pool_BadArguments_AreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedArrayPool(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedArrayPool(0, minimumPooledBytes: 3000));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedArrayPool(0, minimumPooledBytes: 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedArrayPool(64, minimumPooledBytes: 64));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedArrayPool(0, maxRetainedBytes: -1));
    }

    private static unsafe long Address(byte[] a) =>
        (long)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));
}

/// <summary>Runs <see cref="AlignedArraysTests"/> with no other test of the assembly at the same time.</summary>
[CollectionDefinition(nameof(AlignedArraysTests), DisableParallelization = true)]
public sealed class AlignedArraysCollection;
