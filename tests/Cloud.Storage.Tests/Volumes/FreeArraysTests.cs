using System.Collections.Concurrent;
using Cloud.Storage.Volumes;

namespace Cloud.Storage.Tests.Volumes;

public sealed class FreeArraysTests
{
    [Fact]
    public void KeepThenTake_OnceWarm_AllocatesNothing()
    {
        var free = new FreeArrays(1 << 20);
        byte[][] arrays = [new byte[4096], new byte[4096], new byte[65536]];
        // Warm: each length's stack exists and has room for what is kept below.
        foreach (var a in arrays) Assert.True(free.TryKeep(a));
        foreach (var a in arrays) Assert.True(free.TryTake(a.Length, out _));

        var before = GC.GetAllocatedBytesForCurrentThread();
        var taken = 0;
        for (var round = 0; round < 1000; round++)
        {
            foreach (var a in arrays) free.TryKeep(a);
            foreach (var a in arrays)
                if (free.TryTake(a.Length, out _)) taken++;
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(3000, taken);
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void TakeOfALength_GivesTheLastArrayKept_OfExactlyThatLength()
    {
        var free = new FreeArrays(1 << 20);
        var first = new byte[8192];
        var second = new byte[8192];
        free.TryKeep(first);
        free.TryKeep(new byte[4096]);
        free.TryKeep(second);

        Assert.True(free.TryTake(8192, out var a));
        Assert.Same(second, a);
        Assert.True(free.TryTake(8192, out var b));
        Assert.Same(first, b);
        Assert.False(free.TryTake(8192, out _));
        Assert.Equal(4096, free.RetainedBytes);
    }

    [Fact]
    public async Task KeepAndTake_FromManyThreads_NeverHandOutOneArrayTwice_AndCountTheBytesKept()
    {
        var free = new FreeArrays(64 * 4096);
        var inUse = new ConcurrentDictionary<byte[], bool>(ReferenceEqualityComparer.Instance);
        var twice = 0;
        var workers = Enumerable.Range(0, 4).Select(worker => Task.Run(() =>
        {
            for (var i = 0; i < 20_000; i++)
            {
                var a = free.TryTake(4096, out var kept) ? kept : new byte[4096];
                if (!inUse.TryAdd(a, true)) Interlocked.Increment(ref twice);
                inUse.TryRemove(a, out _);
                free.TryKeep(a);
            }
        }));
        await Task.WhenAll(workers);

        Assert.Equal(0, twice);
        var left = 0;
        while (free.TryTake(4096, out _)) left++;
        Assert.Equal(0, free.RetainedBytes);
        Assert.InRange(left, 1, 64);
    }
}
