using Cloud.Grains.Disks;
using Cloud.Storage.Devices;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// A remote member whose serving silo is gone shows up as unreachable, not as a disk error, so that the volume marks
/// it away and it can rejoin when its host returns; an error the serving host reports stays a plain
/// <see cref="BlockDeviceException"/> (<see cref="RemoteBlockDeviceContractTests.Failure_OnTheServingHost_IsABlockDeviceExceptionOnTheCaller"/>).
/// </summary>
public sealed class UnreachableHostTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Io_ToAMemberWhoseServingSiloStopped_IsMemberUnreachable(bool stream)
    {
        var pool = Path.Combine(Path.GetTempPath(), "cloud-pool-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(pool);
        try
        {
            await using var cluster = await CloudCluster.StartAsync(3, o => o.DiskPools = [pool]);
            var caller = cluster.Silos[0];
            var server = cluster.Silos[2];
            var path = Path.Combine(pool, "away.img");
            await using var device = await HostDisks.OpenThroughAsync(
                cluster.Grains(caller), server.Name, path, 1 << 20, caller.SiloAddress.ToParsableString(),
                stream ? cluster.Service<DiskStreamClient>(caller) : null);
            Assert.NotNull(device);
            await device.WriteAsync(0, Blocks.Pattern(512, 1));

            await cluster.Cluster.StopSiloAsync(server);
            var membership = cluster.Service<IClusterMembershipService>(caller);
            await Eventually.TrueAsync(
                () => membership.CurrentSnapshot.GetSiloStatus(server.SiloAddress) == SiloStatus.Dead,
                "the caller sees the serving silo as dead");

            var read = await Assert.ThrowsAsync<MemberUnreachableException>(
                () => device.ReadAsync(0, new byte[512]).AsTask());
            Assert.Contains(path, read.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<MemberUnreachableException>(() => device.WriteAsync(0, new byte[512]).AsTask());
            await Assert.ThrowsAsync<MemberUnreachableException>(() => device.FlushAsync().AsTask());
        }
        finally
        {
            Directory.Delete(pool, recursive: true);
        }
    }
}
