using Cloud.Grains.Abstractions;
using Cloud.Grains.Disks;

namespace Cloud.Grains.Tests;

/// <summary>
/// Four silos, each posing as a host with its own disk pool, and a rebuild delay of two seconds: one cluster per test
/// class, like <see cref="PooledHosts"/>.
/// </summary>
public sealed class FourPooledHostsWithShortDelay : IAsyncLifetime
{
    /// <summary>The rebuild delay every silo is given.</summary>
    public static readonly TimeSpan Delay = TimeSpan.FromSeconds(2);

    private CloudCluster? _cluster;

    /// <summary>The directory holding each silo's pool.</summary>
    public string PoolRoot { get; } =
        Path.Combine(Path.GetTempPath(), "cloud-pools-" + Guid.NewGuid().ToString("N"));

    /// <summary>The cluster; valid once xunit initialized the fixture.</summary>
    public CloudCluster Cluster => _cluster ?? throw new InvalidOperationException("the cluster is not started");

    /// <summary>The pool directory of a silo.</summary>
    public string PoolOf(string siloName) => Path.Combine(PoolRoot, siloName);

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(PoolRoot);
        _cluster = await CloudCluster.StartAsync(4, configureSilo: (silo, o) =>
        {
            Directory.CreateDirectory(PoolOf(silo));
            o.HostName = PooledHosts.HostOf(silo);
            o.DiskPools = [PoolOf(silo)];
            o.HostDownRebuildDelay = Delay;
        });
        await Eventually.TrueAsync(
            () => Cluster.Silos.All(s => Cluster.Service<Cloud.Grains.Delegation.LoadTable>(s).Entries
                .Count(e => e.PoolCapacityBytes > 0) == 4),
            "every silo sees four hosts with a disk pool");
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_cluster is not null) await _cluster.DisposeAsync();
        try { Directory.Delete(PoolRoot, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// A host gone for good (its silo killed) is replaced by itself once the rebuild delay has passed: its member is
/// rebuilt onto the host that holds no member of the volume, and the volume reads back what was written.
/// </summary>
public sealed class HostDownRebuildTests(FourPooledHostsWithShortDelay hosts) : IClassFixture<FourPooledHostsWithShortDelay>
{
    private CloudCluster Cluster => hosts.Cluster;

    [Fact]
    public async Task MemberOfAKilledHost_IsRebuiltOntoTheHostWithoutAMember_AfterTheDelay()
    {
        var client = Cluster.Client;
        var info = await client.CreateVolumeAsync(new VolumeSpec("lost", 1 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var survivor = Cluster.Silos[0];
        var data = Blocks.Pattern(1 << 20, 31);
        await Cluster.FrontEnd(survivor).WriteAsync("lost", 0, data, forceUnitAccess: true);
        await Cluster.FrontEnd(survivor).FlushAsync("lost");

        // The member of a host other than the first silo's (which the in-process cluster needs) is lost.
        var index = Enumerable.Range(0, 3).First(i => info.MemberHost(i) != PooledHosts.HostOf(survivor.Name));
        var doomed = Cluster.Silos.Single(s => PooledHosts.HostOf(s.Name) == info.MemberHost(index));
        var free = Cluster.Silos.Select(s => PooledHosts.HostOf(s.Name))
            .Single(h => Enumerable.Range(0, 3).All(i => info.MemberHost(i) != h));
        var killedAt = DateTimeOffset.UtcNow;
        await Cluster.Cluster.KillSiloAsync(doomed);

        var rebuild = Cluster.Grains(survivor).GetGrain<IHostDownRebuildGrain>(0);
        await Eventually.TrueAsync(
            async () => (await rebuild.GetStatusAsync()) is { Current: null, Completed: 1 },
            "the automatic rebuild finishes",
            TimeSpan.FromSeconds(90),
            TimeSpan.FromMilliseconds(500));
        Assert.True(DateTimeOffset.UtcNow - killedAt >= FourPooledHostsWithShortDelay.Delay, "rebuilt before the delay");
        Assert.Equal(VolumeHealthState.Healthy, (await client.ShowVolumeAsync("lost")).Health);
        var after = (await Cluster.Grains(Cluster.Silos[0]).GetGrain<IVolumeCatalogGrain>(0).GetAsync("lost"))!;
        Assert.Equal(free, after.MemberHost(index));
        Assert.Equal(3, Enumerable.Range(0, 3).Select(after.MemberHost).Distinct().Count());
        Assert.StartsWith(
            hosts.PoolOf(Cluster.Silos.Single(s => PooledHosts.HostOf(s.Name) == free).Name) + Path.DirectorySeparatorChar,
            after.DiskPaths[index],
            StringComparison.Ordinal);
        foreach (var silo in Cluster.Silos.Where(s => s.IsActive))
            Assert.Equal(data, await Cluster.FrontEnd(silo).ReadAsync("lost", 0, data.Length));
        Assert.Equal(0, (await client.ScrubAsync("lost", repair: false)).Mismatches);
    }
}
