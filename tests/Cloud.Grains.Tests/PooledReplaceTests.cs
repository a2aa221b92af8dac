using Cloud.Grains.Abstractions;

namespace Cloud.Grains.Tests;

/// <summary>
/// <c>disk replace</c> of a volume spread over the hosts' disk pools: the new member goes into the pool of a host that
/// holds no other member of the volume (made there by that host's disk service), or of the host the operator names.
/// </summary>
public sealed class PooledReplaceTests(PooledHosts hosts) : IClassFixture<PooledHosts>
{
    private CloudCluster Cluster => hosts.Cluster;

    [Fact]
    public async Task ReplacedMember_GoesToTheHostWithoutAMember_AndRebuildsThere()
    {
        var client = Cluster.Client;
        var info = await client.CreateVolumeAsync(new VolumeSpec("mirror", 1 << 20, VolumeLevel.Raid1, 2, 64 << 10, false));
        var free = Cluster.Silos.Select(s => PooledHosts.HostOf(s.Name))
            .Single(h => h != info.MemberHost(0) && h != info.MemberHost(1));
        var data = Blocks.Pattern(1 << 20, 23);
        await Cluster.FrontEnd(Cluster.Silos[0]).WriteAsync("mirror", 0, data, forceUnitAccess: true);

        await client.FailDiskAsync("mirror", 0, "test");
        await client.ReplaceDiskAsync("mirror", 0, disk: null);
        var replaced = (await Cluster.Grains(Cluster.Silos[0]).GetGrain<IVolumeCatalogGrain>(0).GetAsync("mirror"))!;
        Assert.Equal(free, replaced.MemberHost(0));
        var pool = hosts.PoolOf(Cluster.Silos.Single(s => PooledHosts.HostOf(s.Name) == free).Name);
        Assert.StartsWith(pool + Path.DirectorySeparatorChar, replaced.DiskPaths[0], StringComparison.Ordinal);
        Assert.True(File.Exists(replaced.DiskPaths[0]), "the new member was not made in the free host's pool");

        await client.StartRebuildAsync("mirror");
        await Eventually.TrueAsync(
            async () => (await client.GetRebuildAsync("mirror")) is { Running: false }, "rebuild finishes");
        Assert.Null((await client.GetRebuildAsync("mirror"))!.Error);
        Assert.Equal(VolumeHealthState.Healthy, (await client.ShowVolumeAsync("mirror")).Health);
        foreach (var silo in Cluster.Silos)
            Assert.Equal(data, await Cluster.FrontEnd(silo).ReadAsync("mirror", 0, data.Length));
        Assert.Equal(0, (await client.ScrubAsync("mirror", repair: false)).Mismatches);

        await client.DeleteVolumeAsync("mirror");
        Assert.False(File.Exists(replaced.DiskPaths[0]), "the replacement outlived its volume");
    }

    [Fact]
    public async Task ReplaceOntoANamedHost_IsRefusedWhenItHoldsAnotherMemberOrHasNoPool_AndTakenOtherwise()
    {
        var client = Cluster.Client;
        var info = await client.CreateVolumeAsync(new VolumeSpec("named", 1 << 20, VolumeLevel.Raid1, 2, 64 << 10, false));
        var free = Cluster.Silos.Select(s => PooledHosts.HostOf(s.Name))
            .Single(h => h != info.MemberHost(0) && h != info.MemberHost(1));
        await client.FailDiskAsync("named", 1, "test");

        var taken = await Assert.ThrowsAsync<CloudRequestException>(
            () => client.ReplaceDiskOnHostAsync("named", 1, info.MemberHost(0)!));
        Assert.Contains($"host '{info.MemberHost(0)}' already holds member 0 of volume 'named'", taken.Message, StringComparison.Ordinal);
        var unknown = await Assert.ThrowsAsync<CloudRequestException>(
            () => client.ReplaceDiskOnHostAsync("named", 1, "host-nowhere"));
        Assert.Contains("host 'host-nowhere' has no live silo with a disk pool", unknown.Message, StringComparison.Ordinal);
        var unchanged = (await Cluster.Grains(Cluster.Silos[0]).GetGrain<IVolumeCatalogGrain>(0).GetAsync("named"))!;
        Assert.Equal(info.DiskPaths.ToArray(), unchanged.DiskPaths.ToArray());
        Assert.Equal(info.MemberHosts.ToArray(), unchanged.MemberHosts.ToArray());

        await client.ReplaceDiskOnHostAsync("named", 1, free);
        Assert.Equal(free, (await Cluster.Grains(Cluster.Silos[0]).GetGrain<IVolumeCatalogGrain>(0).GetAsync("named"))!.MemberHost(1));
        await client.DeleteVolumeAsync("named");
    }
}
