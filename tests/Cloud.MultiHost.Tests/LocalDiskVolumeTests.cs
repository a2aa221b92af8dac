using System.Globalization;
using Cloud.Grains.Abstractions;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// A volume on one host's files (the default disks, under that host's private data directory) serves every host:
/// its writes are delegated to, and its reads served by, the silo of the host that reaches the files, and no other
/// silo fails a member it cannot reach.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class LocalDiskVolumeTests(ThreeHosts hosts) : IClassFixture<ThreeHosts>
{
    private const int RegionBytes = 256 << 10;

    private Cloud.HostBed.HostBed Bed => hosts.Bed;

    [Fact]
    public async Task VolumeOnOneHostsFiles_IsWrittenAndReadThroughEveryHost_AndOnlyItsHostDoesTheWrites()
    {
        var count = Bed.Hosts.Count;
        var size = 2L * count * RegionBytes;
        await using var creator = await Bed.ConnectToAsync(1);
        var info = await creator.CreateVolumeAsync(
            new VolumeSpec("local", size, VolumeLevel.Raid5, 3, 64 << 10, false));
        var owner = info.MemberHost(0);
        Assert.NotNull(owner);
        Assert.All(Enumerable.Range(0, info.DiskCount), i => Assert.Equal(owner, info.MemberHost(i)));
        var ownerIndex = Bed.Hosts.Single(h => h.Name == owner).Index;
        Assert.All(
            info.DiskPaths, p => Assert.StartsWith(Bed.Hosts[ownerIndex].DataDirectory, p, StringComparison.Ordinal));
        var before = (await creator.GetClusterStatusAsync())
            .Silos.ToDictionary(s => s.SiloName, s => s.WritesPerformed);

        var expected = new byte[size];
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            var volume = await client.OpenVolumeAsync("local");
            var data = Blocks.Pattern(RegionBytes, seed: 7 + host.Index);
            await volume.WriteAsync(host.Index * RegionBytes, data);
            data.CopyTo(expected.AsSpan(host.Index * RegionBytes));
            var pattern = (byte)(0x21 + host.Index);
            var offset = (count + host.Index) * RegionBytes;
            var uri = string.Create(CultureInfo.InvariantCulture, $"nbd://{Bed.NbdEndPoint(host.Index)}/local");
            (await Tools.RunAsync(qemuIo, ["-f", "raw", uri, "-c", $"write -P {pattern} {offset} {RegionBytes}"]))
                .AssertSuccess($"qemu-io write through {host.Name}");
            expected.AsSpan(offset, RegionBytes).Fill(pattern);
        }

        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            var volume = await client.OpenVolumeAsync("local");
            var actual = new byte[size];
            await volume.ReadAsync(0, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{host.Name} read back other data than was written");
        }

        // Every write was performed by the owner's RAID worker: no other silo reaches the files.
        var after = (await creator.GetClusterStatusAsync()).Silos.ToDictionary(s => s.SiloName, s => s.WritesPerformed);
        Assert.True(after[owner!] > before.GetValueOrDefault(owner!), $"{owner} performed no write");
        foreach (var other in Bed.Hosts.Where(h => h.Name != owner))
            Assert.Equal(before.GetValueOrDefault(other.Name), after[other.Name]);

        // No silo failed a member on no evidence: every member is active, and show names each member's host.
        var status = await creator.ShowVolumeAsync("local");
        Assert.Equal(VolumeHealthState.Healthy, status.Health);
        Assert.All(status.Disks, d => Assert.Equal(DiskState.Active, d.State));
        // One host's files: a process kill there loses no member, so the volume keeps no partial parity log.
        Assert.False(status.PartialParityLog, "a volume of one host's files keeps a partial parity log");
        var scrub = await creator.ScrubAsync("local", repair: false);
        Assert.Equal(0, scrub.Mismatches);
    }
}
