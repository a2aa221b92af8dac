using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Tests;

/// <summary>
/// The delegation settings a user gives in configuration (<c>Cloud:Delegation:FixedTarget</c>,
/// <c>Cloud:InjectedDiskLatency</c>): how they are read, how bad values are refused, and that a fixed target wins over
/// load.
/// </summary>
public sealed class DelegationSettingsTests
{
    private static SiloRuntimeSettings SettingsFrom(Dictionary<string, string?> configuration)
    {
        var services = new ServiceCollection()
            .AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(configuration).Build());
        services.AddOptions<CloudOptions>().BindConfiguration(CloudOptions.SectionName);
        using var provider = services.BuildServiceProvider();
        var options = provider.GetRequiredService<IOptions<CloudOptions>>();
        Assert.True(new CloudOptionsValidator().Validate(null, options.Value).Succeeded);
        return new SiloRuntimeSettings(options);
    }

    [Fact]
    public void FixedTargetAndInjectedLatency_AreReadFromConfiguration()
    {
        var settings = SettingsFrom(new()
        {
            ["Cloud:Delegation:FixedTarget"] = "h2",
            ["Cloud:InjectedDiskLatency"] = "00:00:00.020",
        });
        Assert.Equal("h2", settings.FixedDelegationTarget);
        Assert.Equal(TimeSpan.FromMilliseconds(20), settings.InjectedDiskLatency);
    }

    [Fact]
    public void FixedTarget_FormerNameStillRead_AndEmptyMeansLoadBased()
    {
        Assert.Equal("h3", SettingsFrom(new() { ["Cloud:FixedDelegationTarget"] = "h3" }).FixedDelegationTarget);
        Assert.Null(SettingsFrom(new() { ["Cloud:Delegation:FixedTarget"] = "" }).FixedDelegationTarget);
        Assert.Null(SettingsFrom([]).FixedDelegationTarget);
    }

    [Theory]
    [InlineData("h 2")]
    [InlineData("127.0.0.12:11111")]
    [InlineData("h2/")]
    public void FixedTarget_ThatIsNoSiloName_IsRefusedInOneLineNamingIt(string value)
    {
        var result = new CloudOptionsValidator().Validate(
            null, new CloudOptions { Delegation = new DelegationOptions { FixedTarget = value } });
        Assert.True(result.Failed);
        var failure = Assert.Single(result.Failures!);
        Assert.StartsWith($"Cloud:Delegation:FixedTarget '{value}' is not a silo name", failure);
        Assert.DoesNotContain('\n', failure);
    }

    [Fact]
    public void FixedTarget_DisagreeingWithItsFormerName_IsRefused()
    {
        var result = new CloudOptionsValidator().Validate(
            null,
            new CloudOptions { Delegation = new DelegationOptions { FixedTarget = "h1" }, FixedDelegationTarget = "h2" });
        Assert.Contains("disagree", Assert.Single(result.Failures!));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(60_001)]
    public void InjectedDiskLatency_OutsideItsRange_IsRefusedInOneLine(int milliseconds)
    {
        var result = new CloudOptionsValidator().Validate(
            null, new CloudOptions { InjectedDiskLatency = TimeSpan.FromMilliseconds(milliseconds) });
        Assert.StartsWith("Cloud:InjectedDiskLatency is ", Assert.Single(result.Failures!));
    }
}

/// <summary>A fixed delegation target on the shared in-process cluster.</summary>
[Collection(nameof(SharedCluster))]
public sealed class FixedTargetTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    [Fact]
    public async Task FixedTarget_TakesEveryUnitsWrites_EvenWhileItsLoadShowsItOverloaded()
    {
        var v = await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec("fixed-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        using var decisions = new DecisionRecorder(v.Name);
        var target = Cloud.Silos[2];
        var slow = Cloud.Service<SiloRuntimeSettings>(target);
        try
        {
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = target.Name;
            slow.InjectedDiskLatency = TimeSpan.FromSeconds(1);
            // Writes make the target measure its slow disk (an eighth of each write's latency goes into its average) until every
            // silo's table shows it overloaded, when load-based delegation would move its units.
            var frontEnd = Cloud.FrontEnd(Cloud.Silos[0]);
            await Eventually.TrueAsync(
                async () =>
                {
                    await frontEnd.WriteAsync(v.Name, 0, Blocks.Pattern(4096, 1), forceUnitAccess: true);
                    return Cloud.Silos.All(
                        s => !Cloud.Service<LoadTable>(s).IsAppropriateTarget(target.Name, null, out var why)
                            && why == "target-overloaded");
                },
                "every silo's load table shows the fixed target overloaded");

            // Writes through every silo still go to the fixed target.
            var lockGrain = Cloud.Grains(target).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
            for (var i = 0; i < 6; i++)
            {
                await Cloud.FrontEnd(Cloud.Silos[i % 3])
                    .WriteAsync(v.Name, 4096L * i, Blocks.Pattern(4096, 2 + i), forceUnitAccess: true);
                Assert.Equal(target.Name, (await lockGrain.GetControlAsync()).ActiveTarget);
            }
            Assert.Equal(0, decisions.Count("new", "target-overloaded"));
            Assert.True(decisions.Count("reused", "fixed-target") >= 6, decisions.ToString());
        }
        finally
        {
            slow.InjectedDiskLatency = TimeSpan.Zero;
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = null;
        }
    }
}
