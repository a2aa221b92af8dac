using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Locks;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// A first server whose copy no target takes must end the version it took for it: reads of those stripes wait for
/// every pending version, so one left behind stalls them until the lock grain gives up on it (the re-delegation
/// timeout, 2 min by default). On a host bed this happened when the send met a dead silo (a directory lookup on it)
/// and the resend was refused by a delegate that could not open the volume yet.
/// </summary>
public sealed class RefusedResendTests
{
    /// <summary>Armed by the test: the next two AcceptAsync calls fail, first as a dead silo, then as a refusal.</summary>
    private static int s_failuresLeft;

    [Fact]
    public async Task ResendRefusedAfterASiloFailure_SettlesTheVersion_SoReadsDoNotWaitForIt()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 1,
            configureBuilder: silo => silo.AddIncomingGrainCallFilter(async context =>
            {
                if (context.Grain is IDelegationGrain && context.InterfaceMethod.Name == nameof(IDelegationGrain.AcceptAsync))
                {
                    switch (Interlocked.Decrement(ref s_failuresLeft))
                    {
                        case 1: throw new SiloUnavailableException("injected: the unit's silo is unreachable");
                        case 0: throw new CloudStorageException("injected: the delegate cannot open the volume");
                    }
                }
                await context.Invoke();
            }));
        var name = "refused-" + Guid.NewGuid().ToString("N")[..6];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);

        Volatile.Write(ref s_failuresLeft, 2);
        var refused = await Assert.ThrowsAnyAsync<Exception>(
            () => frontEnd.WriteAsync(name, 0, Blocks.Pattern(64 << 10, 1), forceUnitAccess: false));
        Assert.Contains("cannot open the volume", refused.Message);
        Assert.True(Volatile.Read(ref s_failuresLeft) <= 0, "the injected failures were not both met");

        var lockGrain = cloud.Grains(cloud.Silos[0]).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(info, 0));
        Assert.Equal(0, (await lockGrain.GetControlAsync()).PendingWrites);
        // And a read of the block answers at once rather than after the re-delegation timeout (90 s here).
        var read = await frontEnd.ReadAsync(name, 0, 4096).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(new byte[4096], read);
    }
}
