using System.Globalization;
using Cloud.HostBed;
using Cloud.Testing;
using Xunit.Abstractions;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// A volume on disks every host reaches is one volume from every host: through NBD and the SDK alike; and it keeps
/// serving when the host holding its catalog and lock grains is killed (CatalogHostKillTests.cs).
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed partial class PageBlobVolumeTests(ThreeHostsOnPageBlobs fixture, ITestOutputHelper output)
    : IClassFixture<ThreeHostsOnPageBlobs>
{
    private const int RegionBytes = 1 << 20;

    private Cloud.HostBed.HostBed Bed => fixture.Bed;

    [Fact]
    public async Task RaidFiveOnPageBlobs_WrittenThroughEveryHostsNbdAndSdk_ReadsBackIdenticalFromEveryHost()
    {
        var hosts = Bed.Hosts.Count;
        var size = 2L * hosts * RegionBytes;
        await using (var first = await Bed.ConnectToAsync(0))
        {
            var info = await first.CreateVolumeAsync(PageBlobVolumes.Spec("shared"));
            Assert.All(Enumerable.Range(0, info.DiskCount), i => Assert.Null(info.MemberHost(i)));
        }

        var expected = new byte[size];
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        // Through each host's own NBD export: a region of its own, a pattern of its own.
        foreach (var host in Bed.Hosts)
        {
            var offset = host.Index * RegionBytes;
            var pattern = (byte)(0x11 * (host.Index + 1));
            (await Tools.RunAsync(
                    qemuIo, ["-f", "raw", NbdUri(host.Index), "-c", $"write -P {pattern} {offset} {RegionBytes}"]))
                .AssertSuccess($"qemu-io write through {host.Name}");
            expected.AsSpan(offset, RegionBytes).Fill(pattern);
        }
        // Through each host's gateway with the SDK: the second half.
        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            var volume = await client.OpenVolumeAsync("shared");
            var data = Blocks.Pattern(RegionBytes, seed: 100 + host.Index);
            var offset = (hosts + host.Index) * RegionBytes;
            await volume.WriteAsync(offset, data, forceUnitAccess: true);
            data.CopyTo(expected.AsSpan(offset));
        }

        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            var volume = await client.OpenVolumeAsync("shared");
            var actual = new byte[size];
            await volume.ReadAsync(0, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{host.Name} read back other data than was written");
            foreach (var writer in Bed.Hosts)
            {
                var pattern = (byte)(0x11 * (writer.Index + 1));
                var check = await Tools.RunAsync(
                    qemuIo,
                    ["-f", "raw", NbdUri(host.Index),
                        "-c", $"read -P {pattern} {writer.Index * RegionBytes} {RegionBytes}"]);
                check.AssertSuccess($"qemu-io read through {host.Name} of {writer.Name}'s region");
                Assert.DoesNotContain("verification failed", check.Output, StringComparison.OrdinalIgnoreCase);
            }
        }
    }

    private string NbdUri(int index)
        => string.Create(CultureInfo.InvariantCulture, $"nbd://{Bed.NbdEndPoint(index)}/shared");
}
