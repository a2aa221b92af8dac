using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

/// <summary>
/// <c>volume create</c> without <c>--disk</c> in a cluster of hosts with disk pools: one member per host's pool, and
/// every silo serves the volume, reaching the other hosts' members through the disk service.
/// </summary>
public sealed class DiskPoolPlacementTests(PooledHosts hosts) : IClassFixture<PooledHosts>
{
    private CloudCluster Cluster => hosts.Cluster;

    [Fact]
    public async Task RaidFiveVolume_PutsEachMemberOnADifferentHostsPool_AndEverySiloReadsWhatWasWritten()
    {
        var client = Cluster.Client;
        var info = await client.CreateVolumeAsync(new VolumeSpec("spread", 1 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));

        var memberHosts = Enumerable.Range(0, 3).Select(i => info.MemberHost(i)).ToArray();
        Assert.Equal(3, memberHosts.Distinct().Count());
        for (var i = 0; i < 3; i++)
        {
            var silo = Cluster.Silos.Single(s => PooledHosts.HostOf(s.Name) == memberHosts[i]);
            Assert.StartsWith(hosts.PoolOf(silo.Name) + Path.DirectorySeparatorChar, info.DiskPaths[i], StringComparison.Ordinal);
            Assert.True(File.Exists(info.DiskPaths[i]), $"member {i} was not made in its host's pool");
        }

        var volume = await client.OpenVolumeAsync("spread");
        var data = Blocks.Pattern(256 << 10, 5);
        await volume.WriteAsync(128 << 10, data);
        await volume.FlushAsync();
        foreach (var silo in Cluster.Silos)
        {
            // Each silo's RAID worker opens the volume itself: one member local, two through the disk service.
            var back = await Cluster.Grains(silo).GetGrain<IRaidWorkerGrain>(silo.Name)
                .ReadAsync("spread", 128 << 10, data.Length);
            Assert.True(data.AsSpan().SequenceEqual(back), $"{silo.Name} read back other data than was written");
        }
        var status = await client.ShowVolumeAsync("spread");
        Assert.Equal(VolumeHealthState.Healthy, status.Health);

        await client.DeleteVolumeAsync("spread");
        Assert.All(info.DiskPaths, p => Assert.False(File.Exists(p), $"{p} outlived its volume"));
    }

    [Fact]
    public async Task VolumeWithMoreMembersThanHostsWithPools_IsRefusedNamingTheCount_AndMakesNothing()
    {
        var error = await Assert.ThrowsAsync<CloudRequestException>(
            () => Cluster.Client.CreateVolumeAsync(new VolumeSpec("crowded", 1 << 20, VolumeLevel.Raid5, 4, 64 << 10, false)));
        Assert.Contains("needs 4 hosts with a disk pool", error.Message, StringComparison.Ordinal);
        Assert.Contains("3 have one", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(
            Directory.EnumerateFileSystemEntries(hosts.PoolRoot, "crowded*", SearchOption.AllDirectories), _ => true);
    }
}
