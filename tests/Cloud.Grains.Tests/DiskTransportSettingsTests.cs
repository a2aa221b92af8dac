using Cloud.Grains.Disks;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Tests;

/// <summary>
/// <c>Cloud:DiskTransport</c> and <c>Cloud:DiskStreamPort</c>: how they are read and refused, and that a silo set to
/// grain calls gives no stream with the members it opens, so its callers use grain calls (docs/CLUSTER.md, "Disks
/// across hosts").
/// </summary>
public sealed class DiskTransportSettingsTests
{
    private static CloudOptions From(Dictionary<string, string?> configuration)
    {
        var services = new ServiceCollection()
            .AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(configuration).Build());
        services.AddOptions<CloudOptions>().BindConfiguration(CloudOptions.SectionName);
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<CloudOptions>>().Value;
    }

    [Fact]
    public void Transport_DefaultsToTheStream_AndIsReadFromConfiguration()
    {
        Assert.Equal(CloudOptions.StreamDiskTransport, From([]).DiskTransport);
        var grain = From(new() { ["Cloud:DiskTransport"] = "Grain", ["Cloud:DiskStreamPort"] = "11112" });
        Assert.Equal("Grain", grain.DiskTransport);
        Assert.Equal(11112, grain.DiskStreamPort);
        Assert.True(new CloudOptionsValidator().Validate(null, grain).Succeeded);
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("")]
    public void Transport_ThatIsNeitherStreamNorGrain_IsRefusedInOneLine(string value)
    {
        var failure = Assert.Single(new CloudOptionsValidator().Validate(null, new CloudOptions { DiskTransport = value }).Failures!);
        Assert.Equal($"Cloud:DiskTransport '{value}' is not allowed; use stream or grain.", failure);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(65_536)]
    public void StreamPort_OutsideItsRange_IsRefusedInOneLine(int port)
    {
        var failure = Assert.Single(new CloudOptionsValidator().Validate(null, new CloudOptions { DiskStreamPort = port }).Failures!);
        Assert.StartsWith($"Cloud:DiskStreamPort is {port}; allowed 0-65535", failure);
    }

    [Fact]
    public async Task ASiloSetToGrainCalls_GivesNoStream_AndItsMembersAreServedByGrainCalls()
    {
        await using var hosts = await PooledHosts.StartAsync(configure: o => o.DiskTransport = CloudOptions.GrainDiskTransport);
        var cloud = hosts.Cluster;
        var server = cloud.Silos[1];
        Assert.Null(cloud.Service<DiskStreamListener>(server).Endpoint);
        var path = Path.Combine(hosts.PoolOf(server.Name), "grain-only.img");
        var disk = await cloud.Grains(cloud.Silos[0]).GetGrain<IHostDiskGrain>(server.Name).OpenAsync(path, 1 << 20);
        Assert.NotNull(disk);
        Assert.Equal("", disk.StreamEndpoint);
        Assert.Empty(disk.StreamKey);
        // A volume over the three hosts works all the same.
        var name = "grain-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.Client.CreateVolumeAsync(
            new Cloud.Grains.Abstractions.VolumeSpec(name, 4 << 20, Cloud.Grains.Abstractions.VolumeLevel.Raid5, 3, 64 << 10, false));
        var volume = await cloud.Client.OpenVolumeAsync(name);
        await volume.WriteAsync(0, Blocks.Pattern(256 << 10, 7));
        var back = new byte[256 << 10];
        await volume.ReadAsync(0, back);
        Assert.Equal(Blocks.Pattern(256 << 10, 7), back);
    }
}
