using System.Runtime.CompilerServices;
using Cloud.Grains.Abstractions;
using Cloud.Grains.FirstServers;

namespace Cloud.Grains.Tests;

/// <summary>
/// What a silo keeps of a write after the write is done: its report, not its data. A silo that kept every written
/// copy for its late pollers held gigabytes during a sequential write and paid for a fresh large-object allocation
/// (and a full collection) per request.
/// </summary>
public sealed class RetentionTests
{
    [Fact]
    public async Task AfterWritesCommit_TheSiloHoldsNoneOfTheirData()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var silo = cloud.Silos[0];
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("keep", 16 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.Service<FirstServerService>(silo);
        var written = await WriteAsync(frontEnd, count: 8);
        await frontEnd.FlushAsync("keep");

        // The copies were handed to the silo's own RAID worker in process (one silo: it is every unit's target).
        for (var attempt = 0; attempt < 10 && written.Any(w => w.TryGetTarget(out _)); attempt++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            await Task.Delay(50);
        }
        var alive = written.Count(w => w.TryGetTarget(out _));
        Assert.True(alive == 0, $"{alive} of {written.Count} written buffers are still reachable after their commit");

        // And the reports outlive the data: the volume reads back what was written.
        var back = new byte[256 << 10];
        await frontEnd.ReadAsync("keep", 0, back);
        Assert.Equal(Blocks.Pattern(256 << 10, seed: 0), back);
    }

    /// <summary>
    /// Writes through the front end from a frame of its own, so no local of the test keeps a buffer alive.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static async Task<List<WeakReference<byte[]>>> WriteAsync(FirstServerService frontEnd, int count)
    {
        var refs = new List<WeakReference<byte[]>>();
        for (var i = 0; i < count; i++)
        {
            var data = Blocks.Pattern(256 << 10, seed: i);
            refs.Add(new WeakReference<byte[]>(data));
            await frontEnd.WriteAsync("keep", (long)i * (1 << 20), data, forceUnitAccess: false);
        }
        return refs;
    }
}
