using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// A write-hole resync rewrites only the stripes it repairs. A dead writer's intent regions mark most of a busy volume
/// (342 of a 16 MiB bed volume's 512 stripes), nearly all of them consistent; rewriting every marked stripe's parity
/// put a page-blob request per stripe under the survivors' writes for as long as the recovery ran.
/// </summary>
public sealed class ResyncWritesTests
{
    [Theory]
    [InlineData(RaidLevel.Raid5, 4)]
    [InlineData(RaidLevel.Raid6, 5)]
    public async Task ResyncOfConsistentStripes_WritesNothing_AndOfAnInconsistentOne_RepairsIt(RaidLevel level, int members)
    {
        const int chunk = 8192;
        var raw = Members(members, chunk, 16);
        var devices = raw.Select(d => new FaultInjectingBlockDevice(d)).ToArray();
        await using var volume = await RaidVolume.CreateAsync(
            Definition(level, members, chunk), devices, new RaidVolumeOptions { WriteIntentLog = false });
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, new Random(11), 40);
        await volume.FlushAsync();

        var writes = devices.Sum(d => d.WriteCount);
        Assert.Equal(volume.StripeCount, await volume.ResyncStripesAsync(0, volume.StripeCount));
        Assert.Equal(writes, devices.Sum(d => d.WriteCount));

        // A chunk of stripe 2 on member 1 changed behind the volume's back (a write that landed without the rest of
        // its stripe): the resync writes that stripe, and the volume is consistent again.
        var torn = new byte[512];
        new Random(12).NextBytes(torn);
        await raw[1].WriteAsync(OnDiskFormat.DataOffsetBytes + 2 * OnDiskFormat.ChunkStrideBytes(chunk), torn);
        Assert.Equal(1, await volume.ResyncStripesAsync(2, 3));
        Assert.True(devices.Sum(d => d.WriteCount) > writes, "the resync wrote nothing to an inconsistent stripe");
        var report = await volume.ScrubAsync(repair: false);
        Assert.Equal(0, report.ParityMismatches);
        Assert.Equal(0, report.ChecksumErrors);
    }
}
