using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;

namespace Cloud.Grains.Tests;

/// <summary>The bound on a moving unit's refusal of copies.</summary>
public sealed class MoveRefusalTests
{
    private sealed class ManualClock : TimeProvider
    {
        public long Now { get; set; } = 1_000;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Now;
    }

    [Fact]
    public void MovingUnit_RefusesCopiesUntilTheBound_ThenTakesThemAsAUnitThatStayed()
    {
        var clock = new ManualClock();
        var refusal = new MoveRefusal(clock);
        Assert.False(refusal.IsRefusing);
        refusal.Requested();
        Assert.True(refusal.IsRefusing);
        clock.Now += (MoveRefusal.Max - TimeSpan.FromMilliseconds(1)).Ticks;
        Assert.True(refusal.IsRefusing);
        clock.Now += TimeSpan.FromMilliseconds(1).Ticks;
        Assert.False(refusal.IsRefusing);
        refusal.Requested();
        Assert.True(refusal.IsRefusing);
    }
}

/// <summary>A unit told to move whose placement keeps it where it is.</summary>
[Collection(nameof(SharedCluster))]
public sealed class DelegationMoveTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    [Fact]
    public async Task UnitWhosePlacementChoosesItsOwnSiloAgain_TakesCopiesAgainWithinTheRefusalBound()
    {
        var v = await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec("stay-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var target = Cloud.Silos[1];
        var frontEnd = Cloud.FrontEnd(Cloud.Silos[0]);
        var unit = Cloud.Grains(target).GetGrain<IDelegationGrain>(VolumeMath.PartitionKey(v, 0));
        try
        {
            // With every silo's fixed target on the unit's silo, placement can only choose that silo again: Orleans
            // then keeps the activation instead of migrating it.
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = target.Name;
            await frontEnd.WriteAsync(v.Name, 0, Blocks.Pattern(4096, 1), forceUnitAccess: true);
            Assert.Equal(target.Name, await unit.GetSiloAsync());

            await unit.RelocateAsync();
            var clock = Stopwatch.StartNew();
            var data = Blocks.Pattern(4096, 2);
            await frontEnd.WriteAsync(v.Name, 4096, data, forceUnitAccess: true);

            // The first server's retries (FirstServerWrites.MaxMoveRetries, about 3.5 s) outlast the refusal bound, so
            // the write lands on the unit that stayed; without the bound the unit refused it for good.
            Assert.True(
                clock.Elapsed < MoveRefusal.Max + TimeSpan.FromSeconds(2),
                $"the write took {clock.Elapsed}");
            Assert.Equal(target.Name, await unit.GetSiloAsync());
            var lockGrain = Cloud.Grains(target).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
            Assert.Equal(target.Name, (await lockGrain.GetControlAsync()).ActiveTarget);
            Assert.Equal(data, await Cloud.FrontEnd(Cloud.Silos[2]).ReadAsync(v.Name, 4096, 4096));
        }
        finally
        {
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = null;
        }
    }
}
