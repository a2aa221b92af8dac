using Cloud.Grains.Abstractions;
using Cloud.Grains.FirstServers;
using Cloud.Storage.Volumes;

namespace Cloud.Grains.Tests;

/// <summary>
/// Payload arrays a front end gave up (the NBD server's) go back to the payload pool once their write commits, and
/// only then: what was written stays right whatever later happens to the recycled array.
/// </summary>
public sealed class PayloadRecyclingTests
{
    [Fact]
    public async Task CommittedWrites_GiveTheirArraysBack_AndReuseDoesNotTouchWhatWasWritten()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var silo = cloud.Silos[0];
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("recycle", 16 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.Service<FirstServerService>(silo);

        // A length no other test uses, so the shared pool's arrays of it can only be these.
        const int length = (52 << 10) + (12 << 10);
        var given = new List<byte[]>();
        for (var i = 0; i < 6; i++)
        {
            var data = PayloadPool.Shared.Rent(length);
            Blocks.Pattern(length, seed: 100 + i).CopyTo(data, 0);
            given.Add(data);
            await frontEnd.WriteAsync("recycle", (long)i * (1 << 20), data, forceUnitAccess: false, recycle: true);
        }
        await frontEnd.FlushAsync("recycle");

        var back = new List<byte[]>();
        await Eventually.TrueAsync(() =>
        {
            var a = PayloadPool.Shared.Rent(length);
            if (given.Any(g => ReferenceEquals(g, a))) back.Add(a);
            return back.Count > 0;
        }, "a committed write's array back in the payload pool");

        // Reuse: scribble over every recycled array; the volume must still hold the original patterns.
        foreach (var a in back) Array.Fill(a, (byte)0xEE);
        for (var i = 0; i < 6; i++)
        {
            var read = new byte[length];
            await frontEnd.ReadAsync("recycle", (long)i * (1 << 20), read);
            Assert.Equal(Blocks.Pattern(length, seed: 100 + i), read);
        }
    }

    [Fact]
    public async Task WithoutRecycle_TheCallersArrayNeverEntersThePool()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var silo = cloud.Silos[0];
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("keepmine", 16 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: true));
        var frontEnd = cloud.Service<FirstServerService>(silo);
        const int length = (44 << 10) + (4 << 10);
        var mine = Blocks.Pattern(length, seed: 7);
        await frontEnd.WriteAsync("keepmine", 0, mine, forceUnitAccess: true);
        await frontEnd.FlushAsync("keepmine");
        for (var i = 0; i < 4; i++)
            Assert.False(ReferenceEquals(mine, PayloadPool.Shared.Rent(length)), "a caller's own array was recycled");
    }
}
