using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.FirstServers;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;

namespace Cloud.Grains.Tests;

/// <summary>
/// The write path's grain references (<see cref="GrainReferences{TGrainInterface}"/>): made once per key and reused,
/// so that a write does not pay Orleans' per-call interface resolution three times.
/// </summary>
public sealed class GrainReferencesTests
{
    [Fact]
    public async Task WritesAndReads_ReuseOneReferencePerPartition_AndTheTableStartsAgainWhenFull()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var silo = cloud.Silos[0];
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("refs", 16 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.Service<FirstServerService>(silo);
        var locks = cloud.Service<GrainReferences<IPartitionLockGrain>>(silo);
        var units = cloud.Service<GrainReferences<IDelegationGrain>>(silo);
        Assert.Equal(0, locks.Count);

        // Every write and read below goes to one partition: its lock grain and unit are looked up, not made, after
        // the first write.
        var data = Blocks.Pattern(64 << 10, seed: 7);
        for (var i = 0; i < 4; i++)
            await frontEnd.WriteAsync("refs", (long)i * (64 << 10), data.ToArray(), forceUnitAccess: true);
        var read = new byte[64 << 10];
        await frontEnd.ReadAsync("refs", 3 * (64 << 10), read);
        Assert.Equal(data, read);
        Assert.Equal(1, locks.Count);
        Assert.Equal(1, units.Count);

        // One reference per key, and it works.
        var key = "refs-test/" + Guid.NewGuid().ToString("N") + "/0";
        var first = locks.Get(key);
        Assert.Same(first, locks.Get(key));
        Assert.NotSame(first, locks.Get(key + "x"));
        Assert.Equal(first.GetGrainId(), cloud.Grains(silo).GetGrain<IPartitionLockGrain>(key).GetGrainId());

        // Full: the next new key starts the table again, and lookups still answer.
        for (var i = locks.Count; i < GrainReferences<IPartitionLockGrain>.MaxEntries; i++) locks.Get("fill/" + i);
        Assert.Equal(GrainReferences<IPartitionLockGrain>.MaxEntries, locks.Count);
        var after = locks.Get("one-more");
        Assert.Equal(1, locks.Count);
        Assert.Same(after, locks.Get("one-more"));
        Assert.Equal(first.GetGrainId(), locks.Get(key).GetGrainId());
    }
}
