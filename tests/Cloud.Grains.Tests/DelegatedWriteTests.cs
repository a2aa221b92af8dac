using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;

namespace Cloud.Grains.Tests;

[CollectionDefinition(nameof(SharedCluster))]
public sealed class SharedCluster : ICollectionFixture<SharedClusterFixture>;

public sealed class SharedClusterFixture : IAsyncLifetime
{
    public CloudCluster Cloud { get; private set; } = null!;
    /// <summary>
    /// Load entries live 5 s here, not the 1 s of the other test clusters: no test of this collection stops a silo,
    /// and tests that place units on a chosen silo (a fixed target, a volume's home) need every silo's entry fresh
    /// in the placing silo's table. With 1 s, a pause of the test host (CI saw one as its other test assemblies
    /// started) left one silo's own entry fresh and the others stale, and placement kept the unit on that silo.
    /// </summary>
    public async Task InitializeAsync() =>
        Cloud = await CloudCluster.StartAsync(configure: o => o.LoadEntryTimeToLive = TimeSpan.FromSeconds(5));
    public async Task DisposeAsync() => await Cloud.DisposeAsync();
}

[Collection(nameof(SharedCluster))]
public sealed class DelegatedWriteTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    [Fact]
    public async Task WriteThroughOneSilo_ReadsBackFromEverySilo()
    {
        var name = "e2e-" + Guid.NewGuid().ToString("N")[..6];
        await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 8 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var data = Blocks.Pattern(256 << 10, seed: 1);
        await Cloud.FrontEnd(Cloud.Silos[0]).WriteAsync(name, 128 << 10, data, forceUnitAccess: false);
        foreach (var silo in Cloud.Silos)
        {
            var read = await Cloud.FrontEnd(silo).ReadAsync(name, 128 << 10, data.Length);
            Assert.Equal(data, read);
        }
        // Through the SDK as well, with an unaligned stream write over the same range.
        var volume = await Cloud.Client.OpenVolumeAsync(name);
        await using var stream = volume.OpenStream();
        stream.Position = (128 << 10) + 100;
        await stream.WriteAsync(new byte[] { 1, 2, 3 });
        var back = new byte[4096];
        await volume.ReadAsync(128 << 10, back);
        Assert.Equal(data.AsSpan(0, 100).ToArray(), back[..100]);
        Assert.Equal(new byte[] { 1, 2, 3 }, back[100..103]);
        Assert.Equal(data.AsSpan(103, 4096 - 103).ToArray(), back[103..]);
    }

    [Fact]
    public async Task FlushedWrites_AreOnDiskWithTheirTimestamps()
    {
        var name = "flush-" + Guid.NewGuid().ToString("N")[..6];
        var info = await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid1, 2, 64 << 10, Durable: false));
        var fe = Cloud.FrontEnd(Cloud.Silos[1]);
        await fe.WriteAsync(name, 0, Blocks.Pattern(8192, 2), false);
        await fe.FlushAsync(name);
        var lockGrain = Cloud.Grains(Cloud.Silos[1]).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(info, 0));
        var control = await lockGrain.GetControlAsync();
        Assert.Equal(0, control.PendingWrites);
        var stamps = await lockGrain.GetTimestampsAsync(0, 2);
        Assert.True(stamps[0] > 0 && stamps[0] == stamps[1], $"timestamps {string.Join(",", stamps)}");
        Assert.NotNull(control.ActiveTarget);
    }

    [Fact]
    public async Task BadRequests_AreRejectedNamingTheValue()
    {
        var name = "bad-" + Guid.NewGuid().ToString("N")[..6];
        var ex = await Assert.ThrowsAsync<CloudRequestException>(
            () => Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 1 << 20, VolumeLevel.Raid5, 2, 64 << 10, false)));
        Assert.Contains("DiskCount 2", ex.Message);
        Assert.Equal(nameof(VolumeSpec.DiskCount), ex.Field);
        await Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 1 << 20, VolumeLevel.Raid0, 2, 64 << 10, false));
        ex = await Assert.ThrowsAsync<CloudRequestException>(
            () => Cloud.FrontEnd(Cloud.Silos[0]).WriteAsync(name, 100, new byte[4096], false));
        Assert.Contains("offset 100", ex.Message);
        ex = await Assert.ThrowsAsync<CloudRequestException>(
            () => Cloud.FrontEnd(Cloud.Silos[0]).ReadAsync(name, 1 << 20, 4096));
        Assert.Contains("past the end", ex.Message);
        ex = await Assert.ThrowsAsync<CloudRequestException>(
            () => Cloud.FrontEnd(Cloud.Silos[0]).ReadAsync("no-such-volume", 0, 4096));
        Assert.Contains("'no-such-volume' does not exist", ex.Message);
    }
}
