using System.Net;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Runtime.Placement;

namespace Cloud.Grains.Tests;

/// <summary>
/// Placement of partition-lock grains by the load table's score (<see cref="ScoredPlacementDirector"/>): off a starved
/// silo, spread over a burst, local when nothing is known.
/// </summary>
public sealed class ScoredPlacementTests
{
    private static readonly SiloAddress S1 = SiloAddress.New(new IPEndPoint(IPAddress.Parse("127.0.0.11"), 11111), 1);
    private static readonly SiloAddress S2 = SiloAddress.New(new IPEndPoint(IPAddress.Parse("127.0.0.12"), 11111), 1);
    private static readonly SiloAddress S3 = SiloAddress.New(new IPEndPoint(IPAddress.Parse("127.0.0.13"), 11111), 1);

    private sealed class Context(SiloAddress local, params SiloAddress[] silos) : IPlacementContext
    {
        public SiloAddress[] GetCompatibleSilos(PlacementTarget target) => silos;

        public IReadOnlyDictionary<ushort, SiloAddress[]> GetCompatibleSilosWithVersions(PlacementTarget target) =>
            new Dictionary<ushort, SiloAddress[]> { [0] = silos };

        public SiloAddress LocalSilo => local;

        public SiloStatus LocalSiloStatus => SiloStatus.Active;
    }

    private static SiloLoad Load(SiloAddress silo, double cpu = 30, double delayMs = 0) =>
        new(silo.ToString(), silo.ToParsableString(), 0, 0, 0, cpu, false, DateTimeOffset.UtcNow, 0, 0, 0, false,
            SchedulingDelayMs: delayMs);

    private static PlacementTarget Target(int partition) =>
        new(GrainId.Create("partlock", $"v/{partition}"), new Dictionary<string, object>(), default, 0);

    private static LoadTable Table(params SiloLoad[] entries)
    {
        var table = new LoadTable(Options.Create(new CloudOptions()), TimeProvider.System);
        table.Update([.. entries]);
        return table;
    }

    [Fact]
    public async Task LockGrains_AvoidACappedSilo_WhoseCpuUseLooksLowest()
    {
        // s3 is held to a quarter of a core: 5 % CPU (Orleans' default placement would favour it), work waits 45 ms.
        var director = new ScoredPlacementDirector(Table(Load(S1), Load(S2), Load(S3, cpu: 5, delayMs: 45)));
        var context = new Context(S3, S1, S2, S3);
        for (var p = 0; p < 16; p++)
            Assert.NotEqual(S3, await director.OnAddActivation(ScoredPlacement.Instance, Target(p), context));
    }

    [Fact]
    public async Task ABurstOfActivations_SpreadsOverEqualSilos()
    {
        var director = new ScoredPlacementDirector(Table(Load(S1), Load(S2), Load(S3)));
        var context = new Context(S1, S1, S2, S3);
        var placed = new List<SiloAddress>();
        for (var p = 0; p < 9; p++) placed.Add(await director.OnAddActivation(ScoredPlacement.Instance, Target(p), context));
        Assert.All(new[] { S1, S2, S3 }, s => Assert.Equal(3, placed.Count(x => x.Equals(s))));
    }

    [Fact]
    public void PartitionLockGrains_ArePlacedByScore()
        => Assert.NotNull(typeof(Cloud.Grains.Locks.PartitionLockGrain).GetCustomAttributes(typeof(ScoredPlacementAttribute), false).SingleOrDefault());

    [Fact]
    public async Task WithNoLoadData_TheLocalSiloIsChosen()
    {
        var director = new ScoredPlacementDirector(Table());
        Assert.Equal(S2, await director.OnAddActivation(ScoredPlacement.Instance, Target(0), new Context(S2, S1, S2, S3)));
    }
}
