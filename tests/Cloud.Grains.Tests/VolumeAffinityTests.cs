using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Tests;

/// <summary>
/// The delegation policy's rules given a load table (no cluster): when a target is overloaded, and where a volume's
/// units are placed (<see cref="VolumeAffinity"/>).
/// </summary>
public sealed class VolumeAffinityTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 4, 9, 0, 0, TimeSpan.Zero);

    private sealed class FixedClock : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private const string H1 = "127.0.0.11:11111@1";
    private const string H2 = "127.0.0.12:11111@1";
    private const string H3 = "127.0.0.13:11111@1";
    private static readonly string[] Sorted = [H1, H2, H3];

    private static SiloLoad Load(
        string address, int queue = 0, double diskMs = 0, double cpu = 30, bool draining = false, double delayMs = 0,
        double floorMs = 0) =>
        new("h" + address[9], address, 0, queue, diskMs, cpu, draining, Now, 0, 0, 0, false, "host-" + address[9],
            SchedulingDelayMs: delayMs, DiskFloorMs: floorMs);

    private static LoadTable Table(params SiloLoad[] entries)
    {
        var table = new LoadTable(Options.Create(new CloudOptions()), new FixedClock());
        table.Update([.. entries]);
        return table;
    }

    [Fact]
    public void HomeOfAWholeVolume_IsNotOverloaded_ByTheQueueThatWouldMoveWithIt()
    {
        // All of a volume's units on h1: 20 copies queued, 100 ms engine writes, score 32; h2 and h3 idle at 1.2. Against
        // the cluster mean (11.5) that was overloaded, and the volume went round the silos.
        var table = Table(Load(H1, queue: 20, diskMs: 100, cpu: 50), Load(H2), Load(H3));
        Assert.True(table.IsAppropriateTarget(H1, null, out var reason), reason);
        Assert.Equal("sticky", reason);
    }

    [Fact]
    public void SlowHome_IsOverloaded_WhenMovingItsWorkElsewhereHelps()
    {
        // The same work on a silo whose engine writes take 400 ms: 62 against 4 + 1.5 x (1.2 + 20) = 35.8.
        var table = Table(Load(H1), Load(H2), Load(H3, queue: 20, diskMs: 400, cpu: 50));
        Assert.False(table.IsAppropriateTarget(H3, null, out var reason));
        Assert.Equal("target-overloaded", reason);
    }

    [Fact]
    public void OnlySiloOfTheRequiredHost_IsNeverOverloaded()
    {
        var table = Table(Load(H1), Load(H2), Load(H3, queue: 20, diskMs: 400, cpu: 50));
        Assert.True(table.IsAppropriateTarget(H3, "host-3", out var reason), reason);
    }

    [Fact]
    public void CappedHome_IsOverloaded_ByItsSchedulingDelay_ThoughItsQueueWouldMoveWithIt()
    {
        // The bench's CPU case (h3 held to a quarter of a core): the whole volume's 33 copies queued there, engine
        // writes of 148 ms, CPU 11 % (a capped silo keeps it low) and work waiting 30 ms in its thread pool, against
        // idle silos waiting 1 ms (30 > 20 + 1.5 x 1). The score rule alone keeps it: 51 against 4 + 1.5 x (1.3 + 33).
        var table = Table(Load(H1, delayMs: 1), Load(H2, delayMs: 1), Load(H3, queue: 33, diskMs: 148, cpu: 11, delayMs: 30));
        Assert.False(table.IsAppropriateTarget(H3, null, out var reason));
        Assert.Equal("target-overloaded", reason);
    }

    [Fact]
    public void BusyHome_OnAMachineWhereEverySiloWaits_IsNotOverloadedByItsSchedulingDelay()
    {
        // Every silo shares the machine's cores: the home waits 30 ms, the idle silos 20 ms; 30 < 20 + 1.5 x 20.
        var table = Table(Load(H1, queue: 20, diskMs: 100, cpu: 50, delayMs: 30), Load(H2, delayMs: 20), Load(H3, delayMs: 20));
        Assert.True(table.IsAppropriateTarget(H1, null, out var reason), reason);
    }

    [Fact]
    public void VolumeWithoutAHome_AvoidsAStarvedSilo_WhoseCpuPercentLooksLow()
    {
        // h1's CPU is capped: it shows 5 % where the others show 30 %, but its work waits 50 ms to run.
        var table = Table(Load(H1, cpu: 5, delayMs: 50), Load(H2), Load(H3));
        Assert.Equal(H2, VolumeAffinity.Choose(Sorted, table, VolumeHome.None, Now));
    }

    [Fact]
    public void SlowDisk_IsOverloaded_ByItsWriteFloor_ThoughItsAverageLooksLikeABusyHomes()
    {
        // The bench's 20 ms case with the home on the slowed host: 34 copies queued, engine writes of 27.5 ms on
        // average (a busy healthy home shows 19-23 ms), but none faster than 21 ms. The score rule alone keeps it:
        // 40.7 against 4 + 1.5 x (1.2 + 34) = 56.8.
        var table = Table(Load(H1), Load(H2), Load(H3, queue: 34, diskMs: 27.5, cpu: 45, floorMs: 21));
        Assert.False(table.IsAppropriateTarget(H3, null, out var reason));
        Assert.Equal("target-overloaded", reason);
    }

    [Fact]
    public void BusyHome_WhoseFastestWritesAreFast_IsNotOverloaded()
    {
        var table = Table(Load(H1), Load(H2, queue: 34, diskMs: 23, cpu: 45, floorMs: 2.5), Load(H3));
        Assert.True(table.IsAppropriateTarget(H2, null, out var reason), reason);
    }

    [Fact]
    public void VolumeWithoutAHome_AvoidsASiloRememberedSlow_ThoughItIsIdleNow()
    {
        // h1 was the home and was left for its slow disk: idle now, its average decayed, its floor remembered.
        var table = Table(Load(H1, floorMs: 21), Load(H2), Load(H3));
        Assert.Equal(H2, VolumeAffinity.Choose(Sorted, table, VolumeHome.None, Now));
    }

    [Fact]
    public void LatencyFloor_IsTheFastestSmallWriteOfTwoWindows_RememberedWhileIdle_AndReplacedByOneFastWrite()
    {
        var floor = new LatencyFloor();
        var t = TimeSpan.FromSeconds(100);
        Assert.Equal(0, floor.SampleMs(t));
        floor.Observe(TimeSpan.FromMilliseconds(30), 4096);
        floor.Observe(TimeSpan.FromMilliseconds(21), 4096);
        floor.Observe(TimeSpan.FromMilliseconds(2), 1 << 20); // a large write's time is bandwidth: not timed
        Assert.Equal(21, floor.SampleMs(t + TimeSpan.FromSeconds(1)));
        // Idle: the last window's floor, then the memory, then unknown.
        Assert.Equal(21, floor.SampleMs(t + LatencyFloor.Window + TimeSpan.FromSeconds(1)));
        Assert.Equal(21, floor.SampleMs(t + LatencyFloor.Memory));
        Assert.Equal(0, floor.SampleMs(t + LatencyFloor.Window + LatencyFloor.Memory + TimeSpan.FromSeconds(2)));
        // A silo measured slow and then fast again: one fast write is its floor at once.
        floor.Observe(TimeSpan.FromMilliseconds(25), 4096);
        Assert.Equal(25, floor.SampleMs(t + TimeSpan.FromSeconds(200)));
        floor.Observe(TimeSpan.FromMilliseconds(3), 4096);
        Assert.Equal(3, floor.SampleMs(t + TimeSpan.FromSeconds(201)));
    }

    [Fact]
    public async Task SchedulingDelayProbe_MeasuresTheWaitOfWorkQueuedBehindBusyThreads()
    {
        // Twice as many blocking items as the pool has threads, queued ahead of the probe's item.
        var blockers = 2 * ThreadPool.ThreadCount;
        using var release = new ManualResetEventSlim();
        using var finished = new CountdownEvent(blockers);
        for (var i = 0; i < blockers; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(
                static state =>
                {
                    state.Release.Wait(TimeSpan.FromMilliseconds(300));
                    state.Finished.Signal();
                },
                (Release: release, Finished: finished),
                preferLocal: false);
        }
        var delay = await SchedulingDelayProbe.MeasureAsync(System.Diagnostics.Stopwatch.GetTimestamp());
        release.Set();
        // Every blocker has run before the events are disposed: one still queued would wait on a disposed event, an
        // unhandled exception on a pool thread that ends the whole test process.
        await Eventually.TrueAsync(() => finished.CurrentCount == 0, "every blocking item finished");
        Assert.True(delay >= TimeSpan.FromMilliseconds(100), $"waited {delay.TotalMilliseconds:0.0} ms behind {blockers} busy items");
    }

    [Fact]
    public void Unit_GoesToItsVolumesHome_WhileEligible_EvenWhenAnotherSiloScoresLower()
    {
        var table = Table(Load(H1), Load(H2, queue: 10), Load(H3));
        Assert.Equal(H2, VolumeAffinity.Choose(Sorted, table, VolumeHome.None with { Silo = H2 }, Now));
    }

    [Fact]
    public void VolumeWithoutAHome_GoesToTheLeastLoadedSilo_TiesToTheLowestAddress()
    {
        Assert.Equal(H2, VolumeAffinity.Choose(Sorted, Table(Load(H1, queue: 3), Load(H2), Load(H3, queue: 1)), VolumeHome.None, Now));
        Assert.Equal(H1, VolumeAffinity.Choose(Sorted, Table(Load(H1), Load(H2), Load(H3)), VolumeHome.None, Now));
    }

    [Fact]
    public void DrainingOrSilentHome_IsReplacedByTheLeastLoadedSilo()
    {
        var draining = Table(Load(H1, queue: 2), Load(H2, draining: true), Load(H3, queue: 1));
        Assert.Equal(H3, VolumeAffinity.Choose(Sorted, draining, VolumeHome.None with { Silo = H2 }, Now));
        var silent = Table(Load(H1, queue: 2), Load(H3, queue: 1));
        Assert.Equal(H3, VolumeAffinity.Choose(Sorted, silent, VolumeHome.None with { Silo = H2 }, Now));
    }

    [Fact]
    public void Home_MayBeLeftByLoad_OnlyAfterItsMinimumStay()
    {
        var home = new VolumeHome(H2, null, DateTimeOffset.MinValue, Now);
        Assert.False(home.MayLeave(H2, Now + VolumeHome.MinStay - TimeSpan.FromMilliseconds(1)));
        Assert.True(home.MayLeave(H2, Now + VolumeHome.MinStay));
        Assert.False(home.MayLeave(H1, Now + VolumeHome.MinStay));
    }

    [Fact]
    public void SiloJustLeft_IsNotChosenAgain_UntilTheAvoidanceEnds_UnlessItIsTheOnlyCandidate()
    {
        // h1 was left a second ago but its entry still scores lowest (the table lags the move by a period).
        var table = Table(Load(H1), Load(H2, queue: 2), Load(H3, queue: 5));
        var left = new VolumeHome(null, H1, Now - TimeSpan.FromSeconds(1));
        Assert.Equal(H2, VolumeAffinity.Choose(Sorted, table, left, Now));
        Assert.Equal(H1, VolumeAffinity.Choose(Sorted, table, left with { LeftUtc = Now - VolumeAffinity.AvoidLeftFor }, Now));
        Assert.Equal(H1, VolumeAffinity.Choose([H1], table, left, Now));
    }
}

/// <summary>Volume affinity in a cluster: the home grain's rules, and the units of a volume placed together.</summary>
[Collection(nameof(SharedCluster))]
public sealed class VolumeAffinityClusterTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    [Fact]
    public async Task HomeGrain_ClaimWinsOnlyAgainstTheExpectedHome_AndTheHomeStaysItsMinimumUnlessForced()
    {
        var homes = Cloud.Grains(Cloud.Silos[0]).GetGrain<IVolumeHomeGrain>(Guid.NewGuid().ToString("N"));
        Assert.Equal("a", (await homes.ClaimAsync(null, "a")).Silo);
        // A second silo that also saw no home loses to the first claim, and is told the winner.
        Assert.Equal("a", (await homes.ClaimAsync(null, "b")).Silo);
        // A unit on a silo that is not the home follows the home.
        Assert.True(await homes.LeaveAsync("b", force: false));
        // Load does not move a home claimed just now (fails without the minimum stay).
        Assert.False(await homes.LeaveAsync("a", force: false));
        Assert.Equal("a", (await homes.GetAsync()).Silo);
        Assert.True(await homes.LeaveAsync("a", force: true));
        var left = await homes.GetAsync();
        Assert.Null(left.Silo);
        Assert.Equal("a", left.Left);
        Assert.Equal("c", (await homes.ClaimAsync(null, "c")).Silo);
    }

    [Fact]
    public async Task UnitsOfAVolume_GoToItsHome_ThoughAnotherSiloScoresLower()
    {
        // Four partitions (the shared cluster's partitions are 64 MiB) written at once through one silo, the volume's
        // home claimed beforehand on a silo whose score is raised in every table: by load alone no unit went there.
        const long partitionBytes = CloudOptions.DefaultPartitionTargetBytes;
        const int partitions = 4;
        var v = await Cloud.Client.CreateVolumeAsync(new VolumeSpec(
            "affinity-" + Guid.NewGuid().ToString("N")[..6], partitions * partitionBytes, VolumeLevel.Raid5, 3, 64 << 10, false));
        var home = Cloud.Silos[2];
        var homeAddress = home.SiloAddress.ToParsableString();
        var grains = Cloud.Grains(Cloud.Silos[0]);
        await grains.GetGrain<IVolumeHomeGrain>(v.VolumeId.ToString("N")).ClaimAsync(null, homeAddress);
        foreach (var silo in Cloud.Silos)
            for (var i = 0; i < 100; i++) Cloud.Service<LoadTable>(silo).Debit(homeAddress);
        var fe = Cloud.FrontEnd(Cloud.Silos[0]);
        await Task.WhenAll(Enumerable.Range(0, partitions).Select(
            p => fe.WriteAsync(v.Name, p * partitionBytes, Blocks.Pattern(4096, p), forceUnitAccess: true)));
        var where = new List<string>();
        for (var p = 0; p < partitions; p++)
            where.Add(await grains.GetGrain<IDelegationGrain>(VolumeMath.PartitionKey(v, p)).GetSiloAsync());
        Assert.True(where.All(s => s == home.Name), $"home {home.Name}, units on {string.Join(", ", where)}");
    }
}
