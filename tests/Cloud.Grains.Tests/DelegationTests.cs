using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Orleans.TestingHost;

namespace Cloud.Grains.Tests;

[Collection(nameof(SharedCluster))]
public sealed class DelegationTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    /// <summary>What <paramref name="silo"/>'s load table says of <paramref name="target"/> as a target.</summary>
    private string Judged(Orleans.TestingHost.InProcessSiloHandle silo, string target)
    {
        Cloud.Service<LoadTable>(silo).IsAppropriateTarget(target, null, out var why);
        return why;
    }

    private static async Task<string?> TargetAsync(IPartitionLockGrain lockGrain)
        => (await lockGrain.GetControlAsync()).ActiveTarget;

    /// <summary>
    /// The recorder the tests here count decisions with sees only its volume's: other clusters of this process (and
    /// other volumes of this one) decide at any moment.
    /// </summary>
    [Fact]
    public async Task DecisionRecorder_CountsItsOwnVolumesDecisions_NotAnotherVolumes()
    {
        VolumeSpec Spec(string prefix)
            => new(prefix + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false);
        var mine = await Cloud.Client.CreateVolumeAsync(Spec("mine-"));
        var other = await Cloud.Client.CreateVolumeAsync(Spec("other-"));
        using var myDecisions = new DecisionRecorder(mine.Name);
        using var otherDecisions = new DecisionRecorder(other.Name);

        await Cloud.FrontEnd(Cloud.Silos[0]).WriteAsync(other.Name, 0, Blocks.Pattern(4096, 1), forceUnitAccess: true);

        Assert.Equal(1, otherDecisions.Count("new", "no-target"));
        Assert.Equal("", myDecisions.ToString());
    }

    [Fact]
    public async Task Target_IsKeptWhileAppropriate_AndRechosenWhenOverloaded()
    {
        var v = await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec(
                "sticky-" + Guid.NewGuid().ToString("N")[..6],
                4 << 20,
                VolumeLevel.Raid5,
                3,
                64 << 10,
                false));
        using var decisions = new DecisionRecorder(v.Name);
        var first = Cloud.Silos[0];
        var fe = Cloud.FrontEnd(first);
        var lockGrain = Cloud.Grains(first).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));

        await fe.WriteAsync(v.Name, 0, Blocks.Pattern(4096, 1), forceUnitAccess: true);
        var placed = System.Diagnostics.Stopwatch.StartNew();
        var target = await TargetAsync(lockGrain);
        Assert.NotNull(target);
        // "While appropriate": an earlier test of the shared cluster may have slowed this silo, and its load entry can
        // still say so for a publish interval (CI: sticky=1, target-overloaded=4). Start once the first server's table
        // judges the target fit.
        await Eventually.ValueAsync(
            () => Task.FromResult(Judged(first, target!)),
            reason => reason == "sticky",
            Eventually.Bound,
            Eventually.DefaultPollInterval,
            reason => $"the first server's table never judged the new target fit: {reason}");
        for (var i = 0; i < 5; i++)
            await fe.WriteAsync(v.Name, 4096L * i, Blocks.Pattern(4096, 2 + i), forceUnitAccess: true);
        Assert.Equal(target, await TargetAsync(lockGrain));
        Assert.True(decisions.Count("reused", "sticky") >= 5, decisions.ToString());

        // Load moves a volume's home only after its minimum stay (VolumeHome.MinStay).
        if (VolumeHome.MinStay - placed.Elapsed is { Ticks: > 0 } rest) await Task.Delay(rest);
        // The silo to slow is the unit's target now: on a loaded machine the unit may have moved during the wait, and
        // then the slow write below goes elsewhere and no table ever shows the slowed silo overloaded (suspected in a CI
        // run at 3ef3fb9 whose wait below ran out with no silo's latency above 0; the message now says more).
        await fe.WriteAsync(v.Name, 0, Blocks.Pattern(4096, 8), forceUnitAccess: true);
        target = await TargetAsync(lockGrain);
        Assert.NotNull(target);
        var movedBefore = decisions.Count("new", "target-overloaded");
        var slow = Cloud.Silo(target!);
        var settings = Cloud.Service<SiloRuntimeSettings>(slow);
        settings.InjectedDiskLatency = TimeSpan.FromSeconds(1);
        try
        {
            // The slow silo's own measurements make it overloaded against the cluster mean...
            await fe.WriteAsync(v.Name, 0, Blocks.Pattern(4096, 9), forceUnitAccess: true);
            // Every silo's table must show it: the first server decides to move the unit by its own table, but the
            // unit's migration is placed by the table of the silo it leaves (the slow one), which is refreshed at its
            // own publish; with only the first server's table checked, a lagging table on the slow silo could still
            // rank it lowest and place the unit back on it.
            await Eventually.ValueAsync(
                () => Task.FromResult(Cloud.Silos.Select(s => (Silo: s, Reason: Judged(s, target!))).ToList()),
                judged => judged.All(j => j.Reason == "target-overloaded"),
                Eventually.Bound,
                Eventually.DefaultPollInterval,
                judged => $"not every silo's load table shows the slow target {target} overloaded (decisions: {decisions}): " + string.Join(
                    " | ",
                    judged.Select(j => $"{j.Silo.Name} says {j.Reason}: " + string.Join(
                        ", ",
                        Cloud.Service<LoadTable>(j.Silo).Entries.Select(
                            e => $"{e.SiloName} score {e.Score:0.0} floor {e.DiskFloorMs:0.0} ms wait "
                                + $"{e.SchedulingDelayMs:0.0} ms latency {e.DiskLatencyMs:0.0} ms"
                                + $"{(e.Draining ? " draining" : "")} at {e.PublishedUtc:ss.fff}")))));

            // ...so the next write of the unit goes elsewhere, and that decision is counted with its reason.
            var data = Blocks.Pattern(4096, 10);
            await fe.WriteAsync(v.Name, 8192, data, forceUnitAccess: true);
            var next = await TargetAsync(lockGrain);
            var tables = string.Join(
                " | ",
                Cloud.Silos.Select(
                    s => s.Name + ": " + string.Join(
                        ",",
                        Cloud.Service<LoadTable>(s)
                            .Entries.Select(e => $"{e.SiloName}={e.Score:0.0}@{e.PublishedUtc:ss.fff}"))));
            var unitSilo = await Cloud.Grains(first).GetGrain<IDelegationGrain>(VolumeMath.PartitionKey(v, 0))
                .GetSiloAsync();
            Assert.True(
                target != next,
                $"the unit stayed on {target} (now on {unitSilo}); decisions: {decisions}; tables at {DateTimeOffset.UtcNow:ss.fff}: {tables}");
            Assert.True(decisions.Count("new", "target-overloaded") > movedBefore, decisions.ToString());
            Assert.Equal(data, await Cloud.FrontEnd(slow).ReadAsync(v.Name, 8192, 4096));
        }
        finally
        {
            settings.InjectedDiskLatency = TimeSpan.Zero;
        }
    }

    [Fact]
    public async Task DrainingSilo_TakesNoNewDelegatedWork()
    {
        var v = await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec(
                "drain-" + Guid.NewGuid().ToString("N")[..6],
                4 << 20,
                VolumeLevel.Raid1,
                2,
                64 << 10,
                false));
        var keep = Cloud.Silos[1];
        var drained = Cloud.Silos.Where(s => s != keep).ToList();
        try
        {
            foreach (var s in drained) Cloud.Service<SiloRuntimeSettings>(s).Draining = true;
            var table = Cloud.Service<LoadTable>(Cloud.Silos[0]);
            await Eventually.TrueAsync(
                () => drained.All(s => table.Find(s.Name)?.Draining == true), "draining is published");
            for (var i = 0; i < 4; i++)
                await Cloud.FrontEnd(Cloud.Silos[i % 3])
                    .WriteAsync(v.Name, 4096L * i, Blocks.Pattern(4096, i), forceUnitAccess: true);
            var lockGrain = Cloud.Grains(keep).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
            Assert.Equal(keep.Name, (await lockGrain.GetControlAsync()).ActiveTarget);
        }
        finally
        {
            foreach (var s in drained) Cloud.Service<SiloRuntimeSettings>(s).Draining = false;
        }
    }
}
