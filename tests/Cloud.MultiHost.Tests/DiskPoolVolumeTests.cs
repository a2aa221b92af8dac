using System.Text.Json;
using Cloud.Grains.Abstractions;
using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// One bed of three hosts, each with a disk pool in its private 0700 directory, on its own PostgreSQL server: one per
/// test class, like <see cref="ThreeHosts"/>.
/// </summary>
public sealed class ThreeHostsWithPools : IAsyncLifetime
{
    private PostgresServer? _postgres;
    private Cloud.HostBed.HostBed? _bed;

    /// <summary>The bed; valid once xunit initialized the fixture.</summary>
    public Cloud.HostBed.HostBed Bed => _bed ?? throw new InvalidOperationException("the bed is not started");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync();
        _bed = await Cloud.HostBed.HostBed.StartAsync(_postgres, new HostBedOptions { Hosts = 3, DiskPools = true });
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_bed is not null) await _bed.DisposeAsync();
        if (_postgres is not null) await _postgres.DisposeAsync();
    }
}

/// <summary>
/// A volume spread over the hosts' disk pools, one member per host: no silo can read another host's directory
/// (0700, another user), so every member a silo does not have is reached through its host's disk service.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class DiskPoolVolumeTests(ThreeHostsWithPools hosts) : IClassFixture<ThreeHostsWithPools>
{
    private const int RegionBytes = 256 << 10;

    private Cloud.HostBed.HostBed Bed => hosts.Bed;

    [Fact]
    public async Task RaidFiveOverThreeHostsPools_IsWrittenThroughEveryHost_AndReadsBackIdenticalFromEveryHost()
    {
        var count = Bed.Hosts.Count;
        var size = (long)count * RegionBytes;
        await using var creator = await Bed.ConnectToAsync(0);
        // Every host's pool must be in the load table before placement can see three hosts.
        await Eventually.TrueAsync(
            async () => (await creator.GetClusterStatusAsync()).Silos.Count(s => s.PoolCapacityBytes > 0) == count,
            "every host publishes its disk pool");
        var info = await creator.CreateVolumeAsync(new VolumeSpec("pooled", size, VolumeLevel.Raid5, 3, 64 << 10, false));
        for (var i = 0; i < info.DiskCount; i++)
        {
            var host = Bed.Hosts.Single(h => h.Name == info.MemberHost(i));
            Assert.StartsWith(host.PoolDirectory + Path.DirectorySeparatorChar, info.DiskPaths[i], StringComparison.Ordinal);
        }

        var expected = new byte[size];
        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            var volume = await client.OpenVolumeAsync("pooled");
            var data = Blocks.Pattern(RegionBytes, seed: 11 + host.Index);
            await volume.WriteAsync(host.Index * RegionBytes, data);
            data.CopyTo(expected.AsSpan(host.Index * RegionBytes));
        }
        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            var volume = await client.OpenVolumeAsync("pooled");
            var actual = new byte[size];
            await volume.ReadAsync(0, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{host.Name} read back other data than was written");
        }

        var status = await creator.ShowVolumeAsync("pooled");
        Assert.Equal(VolumeHealthState.Healthy, status.Health);
        Assert.All(status.Disks, d => Assert.Equal(DiskState.Active, d.State));
        Assert.Equal(0, (await creator.ScrubAsync("pooled", repair: false)).Mismatches);

        // The operator's view: volume show --json names each member's host, three different ones.
        var cloudctl = Repository.BuiltAssembly("client/cloudctl", "cloudctl.dll");
        var show = (await Tools.RunAsync("dotnet", [cloudctl, "--gateway", Bed.Gateway(1), "--cluster-id", Bed.ClusterId, "volume", "show", "pooled", "--json"]))
            .AssertSuccess("cloudctl volume show --json");
        using var json = JsonDocument.Parse(show.Output[show.Output.IndexOf('{', StringComparison.Ordinal)..]);
        var memberHosts = json.RootElement.GetProperty("info").GetProperty("memberHosts").EnumerateArray()
            .Select(e => e.GetString()).ToArray();
        Assert.Equal(3, memberHosts.Length);
        Assert.Equal(3, memberHosts.Distinct().Count());
        Assert.All(memberHosts, h => Assert.Contains(Bed.Hosts, b => b.Name == h));
    }

    [Fact]
    public async Task VolumeWithMoreMembersThanHosts_IsRefusedWithOneLine()
    {
        var cloudctl = Repository.BuiltAssembly("client/cloudctl", "cloudctl.dll");
        await Eventually.TrueAsync(
            async () =>
            {
                await using var client = await Bed.ConnectToAsync(0);
                return (await client.GetClusterStatusAsync()).Silos.Count(s => s.PoolCapacityBytes > 0) == Bed.Hosts.Count;
            },
            "every host publishes its disk pool");
        var result = await Tools.RunAsync(
            "dotnet", [cloudctl, "--gateway", Bed.Gateway(0), "--cluster-id", Bed.ClusterId, "volume", "create", "wide", "--size", "1MiB", "--level", "raid6", "--disks", "4"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("needs 4 hosts with a disk pool", result.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Output, StringComparison.Ordinal);
    }
}
