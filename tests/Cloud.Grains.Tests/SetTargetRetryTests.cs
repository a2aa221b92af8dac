using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// A first server tells the partition-lock grain which silo took a copy once that silo holds it. When the lock
/// grain's silo has just died, that call fails until Orleans places the grain anew; the write, whose copy is already
/// with its target, must not fail for it (through NBD it would be an EIO for a write that then commits anyway).
/// </summary>
public sealed class SetTargetRetryTests
{
    /// <summary>Armed by the test: the next SetTargetAsync calls fail as if the lock grain's silo were unreachable.</summary>
    private static int s_failuresLeft;

    [Fact]
    public async Task SetTargetMeetingALostSilo_IsAskedAgain_AndTheWriteSucceeds()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 1,
            configureBuilder: silo => silo.AddIncomingGrainCallFilter(async context =>
            {
                if (context.Grain is IPartitionLockGrain
                    && context.InterfaceMethod.Name == nameof(IPartitionLockGrain.SetTargetAsync)
                    && Interlocked.Decrement(ref s_failuresLeft) >= 0)
                {
                    throw new SiloUnavailableException("injected: the lock grain's silo is unreachable");
                }
                await context.Invoke();
            }));
        var name = "set-target-" + Guid.NewGuid().ToString("N")[..6];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);
        var data = Blocks.Pattern(64 << 10, 7);

        // The partition's first write: its copy goes to a new target, which the lock grain is then told.
        Volatile.Write(ref s_failuresLeft, 2);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        Assert.True(Volatile.Read(ref s_failuresLeft) < 0, "the injected failures were not all met");
        var lockGrain = cloud.Grains(cloud.Silos[0]).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(info, 0));
        Assert.Equal(cloud.Silos[0].Name, (await lockGrain.GetControlAsync()).ActiveTarget);
        Assert.Equal(data, await frontEnd.ReadAsync(name, 0, data.Length));
    }
}
