using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Volumes;

namespace Cloud.Grains.Tests;

/// <summary>Which disks every host reaches, and which silos are eligible for a volume.</summary>
public sealed class MemberReachTests
{
    private static VolumeInfo Volume(ImmutableArray<string> paths, ImmutableArray<string> hosts) =>
        new("v", Guid.NewGuid(), 1 << 20, VolumeLevel.Raid5, paths.Length, 65536, false, paths, DateTimeOffset.UnixEpoch, hosts);

    [Theory]
    [InlineData("pageblob:cont/v-0", true)]
    [InlineData("/dev/disk/by-id/nvme-shared-lun-1", true)]
    [InlineData("/var/lib/cloud/volumes/v/disk0.img", false)]
    [InlineData("/dev/nvme0n1", false)]
    [InlineData("/dev/disk/by-path/pci-0000:00:1f.2-ata-1", false)]
    public void SharedDisks_ArePageBlobsAndDevicesByTheirId(string location, bool shared) =>
        Assert.Equal(shared, MemberDisks.IsShared(location));

    [Fact]
    public void NewMembers_FilesAreTheCreatingHosts_SharedDisksNobodys()
    {
        var hosts = MemberDisks.HostsOf(["/data/v/disk0.img", "pageblob:cont/v-1", "/dev/disk/by-id/lun-2"], "h2");
        Assert.Equal(new[] { "h2", "", "" }, hosts.ToArray());
    }

    [Fact]
    public void VolumeOfOneHostsFiles_IsReachedByThatHostOnly()
    {
        var v = Volume(["/d/0", "/d/1", "pageblob:cont/2"], ["h1", "h1", ""]);
        Assert.Equal("h1", VolumeReach.RequiredHost(v));
        Assert.True(VolumeReach.Reaches(v, "h1"));
        Assert.False(VolumeReach.Reaches(v, "h2"));
        Assert.Equal("h1", v.MemberHost(0));
        Assert.Null(v.MemberHost(2));
    }

    [Fact]
    public void VolumeOfSharedDisks_IsReachedByEveryHost()
    {
        var v = Volume(["pageblob:cont/0", "pageblob:cont/1"], ["", ""]);
        Assert.Null(VolumeReach.RequiredHost(v));
        Assert.True(VolumeReach.Reaches(v, "any"));
    }

    [Fact]
    public void VolumeRecordedBeforeHosts_IsReachedByEveryHost()
    {
        // A catalog written before members had hosts (one machine, one data directory shared by its silos).
        var v = Volume(["/d/0", "/d/1"], default);
        Assert.Null(VolumeReach.RequiredHost(v));
        Assert.True(VolumeReach.Reaches(v, "h3"));
        Assert.Null(v.MemberHost(1));
    }

    [Fact]
    public void VolumeWithFilesOnSeveralHosts_IsReachedByEveryHost_ThroughTheDiskService()
    {
        // One member per host's pool: each host serves its own file to the others, so every silo is eligible.
        var v = Volume(["/p1/v/disk0.img", "/p2/v/disk1.img", "/p3/v/disk2.img"], ["h1", "h2", "h3"]);
        Assert.Null(VolumeReach.RequiredHost(v));
        Assert.True(VolumeReach.Reaches(v, "h1"));
        Assert.True(VolumeReach.Reaches(v, "h4"));
        Assert.Equal("h2", v.MemberHost(1));
    }
}
