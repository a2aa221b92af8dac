using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// Calls a first server makes that meet a lost silo: between a silo's death and the cluster declaring it, calls to
/// grains it hosted (or whose directory entries it kept) fail until Orleans places them anew. A request must wait that
/// out rather than fail (through NBD, an EIO). Each test fails the next calls of one grain method, as if that grain's
/// silo were unreachable, in a one-silo cluster.
/// </summary>
public sealed class LostSiloCallTests
{
    /// <summary>
    /// Telling the lock grain which silo took a write's copy: the copy is with its target already, so the write must not
    /// fail for it (it would commit anyway).
    /// </summary>
    [Fact]
    public async Task SetTargetMeetingALostSilo_IsAskedAgain_AndTheWriteSucceeds()
    {
        var loss = new InjectedSiloLoss(typeof(IPartitionLockGrain), nameof(IPartitionLockGrain.SetTargetAsync));
        await using var cloud = await loss.StartAsync();
        var name = "set-target-" + Guid.NewGuid().ToString("N")[..6];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);
        var data = Blocks.Pattern(64 << 10, 7);

        // The partition's first write: its copy goes to a new target, which the lock grain is then told.
        loss.Arm(2);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        Assert.True(loss.AllMet, "the injected failures were not all met");
        var lockGrain = cloud.Grains(cloud.Silos[0]).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(info, 0));
        Assert.Equal(cloud.Silos[0].Name, (await lockGrain.GetControlAsync()).ActiveTarget);
        Assert.Equal(data, await frontEnd.ReadAsync(name, 0, data.Length));
    }

    /// <summary>
    /// The writer slot a silo asks for when it first opens a volume (the crash trials' read right after a kill once
    /// failed here).
    /// </summary>
    [Fact]
    public async Task WriterSlotCallMeetingALostSilo_IsAskedAgain_AndTheVolumeOpens()
    {
        var loss = new InjectedSiloLoss(typeof(IWriterSlotsGrain), nameof(IWriterSlotsGrain.GetWriterSlotAsync));
        await using var cloud = await loss.StartAsync();
        var name = "slot-" + Guid.NewGuid().ToString("N")[..6];
        var data = Blocks.Pattern(64 << 10, 11);

        // Armed before anything opens a volume on the silo: the first open asks for the slot.
        loss.Arm(2);
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        Assert.True(loss.AllMet, "the injected failures were not all met");
        Assert.Equal(data, await frontEnd.ReadAsync(name, 0, data.Length));
    }

    /// <summary>Fails the next armed calls of one grain interface's method with a <see cref="SiloUnavailableException"/>.</summary>
    private sealed class InjectedSiloLoss(Type grainInterface, string method)
    {
        private int _left;

        /// <summary>True once every armed call failed (and none is left armed).</summary>
        public bool AllMet => Volatile.Read(ref _left) < 0;

        public void Arm(int calls) => Volatile.Write(ref _left, calls);

        public Task<CloudCluster> StartAsync() =>
            CloudCluster.StartAsync(
                silos: 1,
                configureBuilder: silo => silo.AddIncomingGrainCallFilter(async context =>
                {
                    if (grainInterface.IsInstanceOfType(context.Grain)
                        && context.InterfaceMethod.Name == method
                        && Interlocked.Decrement(ref _left) >= 0)
                    {
                        throw new SiloUnavailableException($"injected: the silo of {grainInterface.Name} is unreachable");
                    }
                    await context.Invoke();
                }));
    }
}
