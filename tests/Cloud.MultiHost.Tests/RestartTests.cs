using Cloud.HostBed;
using Cloud.Testing;
using Xunit.Abstractions;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// Every host of the bed goes down (one gracefully, the others by <c>kill -9</c>) and comes back (issue 14, item 5):
/// what was written and flushed reads back identical through every host, scrub finds no mismatch, and the partition
/// clocks, kept in PostgreSQL, go on above every timestamp handed out before.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class RestartTests(
    ThreeHostsOnPageBlobs hosts,
    ITestOutputHelper output) : IClassFixture<ThreeHostsOnPageBlobs>
{
    private const string VolumeName = "restart";

    /// <summary>The image is written in pieces of this size, each its own request.</summary>
    private const int WriteBytes = 1 << 20;

    private Cloud.HostBed.HostBed Bed => hosts.Bed;

    private void Log(string line) => output.WriteLine(line);

    [Fact]
    public async Task RestartingEveryHost_OneGracefullyTheOthersKilled_EveryHostReadsTheImageBack_AndScrubFindsNothing()
    {
        var seed = Environment.TickCount;
        Log($"seed {seed}");
        var image = new byte[PageBlobVolumes.VolumeBytes];
        new Random(seed).NextBytes(image);
        Cloud.Grains.Locks.PartitionControl[] before;
        await using (var client = await Bed.ConnectToAsync(0))
        {
            var volume = await PageBlobVolumes.CreateAsync(client, VolumeName);
            // FUA: each piece is acknowledged once on the page blobs, so the image is durable when the loop ends and no
            // single FLUSH has to wait for 16 MiB of RAID-5 writes to Azurite within Orleans' 30 s response timeout.
            for (var offset = 0; offset < image.Length; offset += WriteBytes)
                await volume.WriteAsync(offset, image.AsMemory(offset, WriteBytes), forceUnitAccess: true);
            await CrashScenario.RetryAsync(async () => { await volume.FlushAsync(); return 0; });
            before = await PartitionLocks.ControlsAsync(
                PartitionLocks.Grains(client, volume.Info, Bed.PartitionTargetBytes));
        }

        // h1 leaves gracefully (draining) while the others run; then h2 and h3 die without a word, so the cluster
        // ends with stale membership rows and no silo that saw it coming.
        Assert.Equal(0, await Bed.StopAsync(0));
        await Bed.KillAsync(1);
        await Bed.KillAsync(2);
        Assert.DoesNotContain(Bed.Hosts, h => Bed.IsRunning(h.Index));

        await Task.WhenAll(Bed.Hosts.Select(h => Bed.StartHostAsync(h.Index)));
        await Bed.WaitForActiveAsync(Bed.Hosts.Count);

        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            var volume = await CrashScenario.OpenAsync(client, VolumeName);
            var read = new byte[image.Length];
            await CrashScenario.RetryAsync(async () => { await volume.ReadAsync(0, read); return 0; });
            var first = read.AsSpan().CommonPrefixLength(image);
            Assert.True(
                first == image.Length, $"through {host.Name}: the image differs from byte {first} on (seed {seed})");
            Log($"through {host.Name}: {read.Length} bytes read back identical");
        }

        await using (var client = await Bed.ConnectToAsync(Bed.Hosts.Count - 1))
        {
            var scrub = await CrashScenario.RetryAsync(() => client.ScrubAsync(VolumeName, repair: false));
            Log(
                $"scrub: {scrub.StripesChecked} stripes, {scrub.Mismatches} parity mismatches, {scrub.ChecksumErrors} checksum errors");
            Assert.True(scrub.StripesChecked > 0, "scrub checked no stripes");
            Assert.Equal(0, scrub.Mismatches);
            Assert.Equal(0, scrub.ChecksumErrors);

            // One write per partition (the image's own bytes, so it stays what was read): each takes a timestamp from
            // a lock grain activated afresh after the restart, which must be above every one handed out before it.
            var volume = await CrashScenario.OpenAsync(client, VolumeName);
            var grains = PartitionLocks.Grains(client, volume.Info, Bed.PartitionTargetBytes);
            for (var p = 0; p < grains.Length; p++)
            {
                var offset = (int)PartitionLocks.FirstByte(volume.Info, Bed.PartitionTargetBytes, p);
                await volume.WriteAsync(offset, image.AsMemory(offset, Cloud.Client.CloudVolume.BlockSizeBytes));
            }
            var after = await PartitionLocks.ControlsAsync(grains);
            for (var p = 0; p < after.Length; p++)
            {
                Assert.True(after[p].LastTimestamp > before[p].LastTimestamp,
                    $"partition {p}: last timestamp {after[p].LastTimestamp} after the restart is not above {before[p].LastTimestamp} before it");
            }
        }
    }
}
