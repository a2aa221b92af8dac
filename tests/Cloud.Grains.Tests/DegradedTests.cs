using Cloud.Grains.Abstractions;

namespace Cloud.Grains.Tests;

[Collection(nameof(SharedCluster))]
public sealed class DegradedTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    [Theory]
    [InlineData(VolumeLevel.Raid5, 3, new[] { 1 })]
    [InlineData(VolumeLevel.Raid6, 4, new[] { 0, 2 })]
    public async Task DegradedVolume_ServesReadsAndWritesFromEverySilo_AndRebuildRestoresHealth(
        VolumeLevel level,
        int disks,
        int[] failed)
    {
        var name = $"deg-{level.ToString().ToLowerInvariant()}-{Guid.NewGuid().ToString("N")[..6]}";
        await Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 2 << 20, level, disks, 16 << 10, false));
        var before = Blocks.Pattern(512 << 10, 41);
        await Cloud.FrontEnd(Cloud.Silos[0]).WriteAsync(name, 0, before, forceUnitAccess: false);
        await Cloud.FrontEnd(Cloud.Silos[0]).FlushAsync(name);

        foreach (var index in failed) await Cloud.Client.FailDiskAsync(name, index, "test");
        var status = await Cloud.Client.ShowVolumeAsync(name);
        Assert.Equal(VolumeHealthState.Degraded, status.Health);
        Assert.All(failed, i => Assert.Equal(DiskState.Failed, status.Disks[i].State));

        foreach (var silo in Cloud.Silos)
            Assert.Equal(before, await Cloud.FrontEnd(silo).ReadAsync(name, 0, before.Length));
        var during = Blocks.Pattern(128 << 10, 42);
        await Cloud.FrontEnd(Cloud.Silos[1]).WriteAsync(name, 64 << 10, during, forceUnitAccess: true);
        foreach (var silo in Cloud.Silos)
            Assert.Equal(during, await Cloud.FrontEnd(silo).ReadAsync(name, 64 << 10, during.Length));

        foreach (var index in failed) await Cloud.Client.ReplaceDiskAsync(name, index);
        await Cloud.Client.StartRebuildAsync(name);
        await Eventually.TrueAsync(
            async () => (await Cloud.Client.GetRebuildAsync(name)) is { Running: false }, "rebuild finishes");
        Assert.Null((await Cloud.Client.GetRebuildAsync(name))!.Error);
        status = await Cloud.Client.ShowVolumeAsync(name);
        Assert.Equal(VolumeHealthState.Healthy, status.Health);
        var expected = before.ToArray();
        during.CopyTo(expected, 64 << 10);
        foreach (var silo in Cloud.Silos)
            Assert.Equal(expected, await Cloud.FrontEnd(silo).ReadAsync(name, 0, expected.Length));
        Assert.Equal(0, (await Cloud.Client.ScrubAsync(name, repair: false)).Mismatches);
    }
}
