using Cloud.Storage.Devices;

namespace Cloud.Storage.Tests.Devices;

/// <summary>
/// Group commit of a device's flush (<see cref="FlushCoalescer"/>): callers share flushes, but none returns before a
/// flush that started after it asked has completed, and none is told a failed flush succeeded.
/// </summary>
public sealed class FlushCoalescerTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>A flush that blocks until released, and records how many flushes started.</summary>
    private sealed class GatedFlush
    {
        private readonly SemaphoreSlim _release = new(0);
        private readonly SemaphoreSlim _started = new(0);
        public int Started;
        public Exception? FailNext;

        public void Run()
        {
            Interlocked.Increment(ref Started);
            _started.Release();
            _release.Wait(Bound);
            if (Interlocked.Exchange(ref FailNext, null) is { } e) throw e;
        }

        public async Task WaitStartedAsync() => Assert.True(await _started.WaitAsync(Bound), "no flush started");

        public void ReleaseOne() => _release.Release();
    }

    [Fact]
    public async Task CallersArrivingDuringAFlush_ShareTheNextOne_AndNoneReturnsBeforeIt()
    {
        var gate = new GatedFlush();
        var coalescer = new FlushCoalescer(gate.Run);
        var first = coalescer.FlushAsync().AsTask();
        await gate.WaitStartedAsync();
        // These arrive while the first flush runs: it may not have covered their writes.
        var later = Enumerable.Range(0, 8).Select(_ => coalescer.FlushAsync().AsTask()).ToArray();
        gate.ReleaseOne();
        await first.WaitAsync(Bound);
        await gate.WaitStartedAsync();
        await Task.Delay(50);
        Assert.All(later, t => Assert.False(t.IsCompleted, "a caller returned on a flush that started before it asked"));
        gate.ReleaseOne();
        await Task.WhenAll(later).WaitAsync(Bound);
        Assert.Equal(2, gate.Started);
        Assert.Equal(2, coalescer.Flushes);
    }

    [Fact]
    public async Task AFailedFlush_FailsEveryCallerItCovered_EvenAfterALaterSuccess()
    {
        var gate = new GatedFlush();
        var coalescer = new FlushCoalescer(gate.Run);
        var first = coalescer.FlushAsync().AsTask();
        await gate.WaitStartedAsync();
        var covered = Enumerable.Range(0, 4).Select(_ => coalescer.FlushAsync().AsTask()).ToArray();
        gate.ReleaseOne();
        await first.WaitAsync(Bound);
        // The second flush covers the four and fails.
        await gate.WaitStartedAsync();
        gate.FailNext = new IOException("injected EIO");
        gate.ReleaseOne();
        foreach (var t in covered)
            Assert.Equal("injected EIO", (await Assert.ThrowsAsync<IOException>(() => t)).Message);
        // A caller arriving after the failure gets a flush of its own, which succeeds.
        var after = coalescer.FlushAsync().AsTask();
        await gate.WaitStartedAsync();
        gate.ReleaseOne();
        await after.WaitAsync(Bound);
        Assert.Equal(3, gate.Started);
    }

    [Fact]
    public async Task AFileDevice_IssuesFewerFlushesThanConcurrentCallers_AndEachCallerSeesItsWrite()
    {
        var dir = Directory.CreateTempSubdirectory("cloud-flush-").FullName;
        try
        {
            await using var device = new FileBlockDevice(Path.Combine(dir, "m.img"), 1 << 20);
            const int callers = 32;
            var writes = Enumerable.Range(0, callers).Select(async i =>
            {
                var block = new byte[4096];
                Array.Fill(block, (byte)(i + 1));
                await device.WriteAsync(i * 4096L, block);
                await device.FlushAsync();
            }).ToArray();
            await Task.WhenAll(writes);
            Assert.InRange(device.FlushesIssued, 1, callers / 2);
            var back = new byte[4096];
            for (var i = 0; i < callers; i++)
            {
                await device.ReadAsync(i * 4096L, back);
                Assert.All(back, b => Assert.Equal((byte)(i + 1), b));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
