using Cloud.Grains.Abstractions;
using Cloud.Grains.Volumes;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// A silo opening a volume asks the writer-slots grain for its slot. Right after another silo died, that grain (or
/// its directory entry) may be on the dead silo and the call fails until Orleans places it anew; the first read or
/// write that opens the volume on the survivor must wait that out, not fail (the crash trials' read right after a
/// kill failed this way, through NBD an EIO).
/// </summary>
public sealed class WriterSlotRetryTests
{
    /// <summary>Armed by the test: the next GetWriterSlotAsync calls fail as if the grain's silo were unreachable.</summary>
    private static int s_failuresLeft;

    [Fact]
    public async Task WriterSlotCallMeetingALostSilo_IsAskedAgain_AndTheVolumeOpens()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 1,
            configureBuilder: silo => silo.AddIncomingGrainCallFilter(async context =>
            {
                if (context.Grain is IWriterSlotsGrain
                    && context.InterfaceMethod.Name == nameof(IWriterSlotsGrain.GetWriterSlotAsync)
                    && Interlocked.Decrement(ref s_failuresLeft) >= 0)
                {
                    throw new SiloUnavailableException("injected: the writer-slots grain's silo is unreachable");
                }
                await context.Invoke();
            }));
        var name = "slot-" + Guid.NewGuid().ToString("N")[..6];
        var data = Blocks.Pattern(64 << 10, 11);

        // Armed before anything opens a volume on the silo: the first open asks for the slot.
        Volatile.Write(ref s_failuresLeft, 2);
        await cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        Assert.True(Volatile.Read(ref s_failuresLeft) < 0, "the injected failures were not all met");
        Assert.Equal(data, await frontEnd.ReadAsync(name, 0, data.Length));
    }
}
