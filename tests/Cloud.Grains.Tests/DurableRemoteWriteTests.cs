using System.Collections.Concurrent;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Disks;
using Cloud.Grains.Hosting;
using Cloud.Storage.Format;
using Cloud.Testing;

namespace Cloud.Grains.Tests;

/// <summary>
/// A durable volume's write forces each member write to stable storage. A member on another host used to get it as two
/// requests, the write and then a flush, each a round trip and a grain call on both silos; it is now one request that
/// the serving host answers after writing and flushing (docs/BENCHMARKS.md, "Members across hosts"), over either
/// transport. With the disk stream (the default) none of the data goes by grain calls.
/// </summary>
public sealed class DurableRemoteWriteTests
{
    [Theory]
    [InlineData(CloudOptions.StreamDiskTransport)]
    [InlineData(CloudOptions.GrainDiskTransport)]
    public async Task WholeStripesOfADurableVolume_ReachEachRemoteMemberAsOneDurableWrite(string transport)
    {
        // Requests as each serving host's disk server took them, and disk grain writes as they arrived.
        var served = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        var grainWrites = 0;
        var counting = false;
        await using var hosts = await PooledHosts.StartAsync(
            silo => silo.AddIncomingGrainCallFilter(async context =>
            {
                if (Volatile.Read(ref counting) && context.Grain is IHostDiskGrain
                    && context.InterfaceMethod.Name.StartsWith("Write", StringComparison.Ordinal))
                    Interlocked.Increment(ref grainWrites);
                await context.Invoke();
            }),
            o => o.DiskTransport = transport);
        var cloud = hosts.Cluster;
        foreach (var silo in cloud.Silos)
            cloud.Service<DiskServer>(silo).Served += (kind, offset) =>
            {
                if (!Volatile.Read(ref counting)) return;
                // Writes below the data area (superblock refreshes, intent and away pages) come with flushes of their
                // own, whenever the engine needs them; the data writes are what this test is about.
                var name = kind != "Flush" && offset < OnDiskFormat.DataOffsetBytes ? "metadata " + kind : kind;
                served.AddOrUpdate(name, 1, (_, n) => n + 1);
            };
        var name = "durable-" + Guid.NewGuid().ToString("N")[..6];
        // Three members, one per host: at least two are on another host than whichever silo writes.
        const int chunk = 64 << 10;
        var info = await cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, chunk, true));
        var volume = await cloud.Client.OpenVolumeAsync(name);
        var stripeData = 2 * chunk;
        // The first write opens the members and marks the region's write intent (a write and flush of its own).
        await volume.WriteAsync(0, Blocks.Pattern(4 * stripeData, 1));

        Volatile.Write(ref counting, true);
        var data = Blocks.Pattern(4 * stripeData, 2);
        try
        {
            for (var i = 0; i < 4; i++) await volume.WriteAsync(i * 4L * stripeData, data);
        }
        finally
        {
            Volatile.Write(ref counting, false);
        }

        var durable = served.GetValueOrDefault("WriteDurable");
        var plain = served.GetValueOrDefault("Write");
        var seen = string.Join(", ", served.Select(c => $"{c.Key} {c.Value}")) + $"; disk grain writes {grainWrites}";
        Assert.True(durable >= 4 * 2, $"expected a durable write per remote member per write; disk service requests: {seen}");
        Assert.True(plain == 0, $"data written without its flush; disk service requests: {seen}");
        if (transport == CloudOptions.StreamDiskTransport)
            Assert.True(grainWrites == 0, $"writes went by grain calls despite the disk stream; {seen}");
        else
            Assert.True(grainWrites >= durable, $"writes did not go by grain calls; {seen}");
        // Flushes are not counted here: the engine's metadata writes (a superblock refresh, say) bring their own at
        // times of their own, so their number is not the data path's. FlushScopeTests counts them on the engine.
        var back = new byte[4 * stripeData];
        for (var i = 0; i < 4; i++)
        {
            await volume.ReadAsync(i * 4L * stripeData, back);
            Assert.True(back.AsSpan().SequenceEqual(data), $"write {i} does not read back");
        }
        Assert.Equal(name, info.Name);
    }
}
