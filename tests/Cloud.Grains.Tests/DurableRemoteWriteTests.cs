using System.Collections.Concurrent;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Disks;
using Cloud.Storage.Format;
using Cloud.Testing;

namespace Cloud.Grains.Tests;

/// <summary>
/// A durable volume's write forces each member write to stable storage. A member on another host used to get it as two
/// requests, the write and then a flush, each a round trip and a grain call on both silos; it is now one request that
/// the serving host answers after writing and flushing (docs/BENCHMARKS.md, "Members across hosts").
/// </summary>
public sealed class DurableRemoteWriteTests
{
    /// <summary>Calls to each disk-service method while the test counts.</summary>
    private static readonly ConcurrentDictionary<string, int> s_calls = new(StringComparer.Ordinal);

    private static volatile bool s_counting;

    [Fact]
    public async Task WholeStripesOfADurableVolume_ReachEachRemoteMemberAsOneDurableWrite()
    {
        await using var hosts = await PooledHosts.StartAsync(silo => silo.AddIncomingGrainCallFilter(async context =>
        {
            if (s_counting && context.Grain is IHostDiskGrain)
            {
                // Writes below the data area (superblock refreshes, intent and away pages) come with flushes of their
                // own, whenever the engine needs them; the data writes are what this test is about.
                var name = context.InterfaceMethod.Name;
                if (name.StartsWith("Write", StringComparison.Ordinal) && context.Request.GetArgument(1) is long offset
                    && offset < OnDiskFormat.DataOffsetBytes)
                    name = "metadata " + name;
                s_calls.AddOrUpdate(name, 1, (_, n) => n + 1);
            }
            await context.Invoke();
        }));
        var cloud = hosts.Cluster;
        var name = "durable-" + Guid.NewGuid().ToString("N")[..6];
        // Three members, one per host: at least two are on another host than whichever silo writes.
        const int chunk = 64 << 10;
        var info = await cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, chunk, true));
        var volume = await cloud.Client.OpenVolumeAsync(name);
        var stripeData = 2 * chunk;
        // The first write opens the members and marks the region's write intent (a write and flush of its own).
        await volume.WriteAsync(0, Blocks.Pattern(4 * stripeData, 1));

        s_calls.Clear();
        s_counting = true;
        var data = Blocks.Pattern(4 * stripeData, 2);
        try
        {
            for (var i = 0; i < 4; i++) await volume.WriteAsync(i * 4L * stripeData, data);
        }
        finally
        {
            s_counting = false;
        }

        var durable = s_calls.GetValueOrDefault(nameof(IHostDiskGrain.WritePooledDurableAsync));
        var plain = s_calls.GetValueOrDefault(nameof(IHostDiskGrain.WritePooledAsync));
        var seen = string.Join(", ", s_calls.Select(c => $"{c.Key} {c.Value}"));
        Assert.True(durable >= 4 * 2, $"expected a durable write per remote member per write; disk service calls: {seen}");
        Assert.True(plain == 0, $"data written without its flush; disk service calls: {seen}");
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
