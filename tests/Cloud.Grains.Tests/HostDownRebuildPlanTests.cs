using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Disks;

namespace Cloud.Grains.Tests;

/// <summary>
/// The choices of the automatic rebuild after a host's loss, without a cluster: when a host's members are due (the
/// delay), and where a new member may go (never a host that holds another member of the volume).
/// </summary>
public sealed class HostDownRebuildPlanTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 4, 6, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Delay = TimeSpan.FromMinutes(10);

    private static VolumeInfo Spread(string name, VolumeLevel level, params string[] hosts) =>
        new(name, Guid.NewGuid(), 1 << 20, level, hosts.Length, 64 << 10, false,
            [.. hosts.Select((h, i) => $"/pool/{h}/{name}/disk{i}.img")], Start, [.. hosts]);

    [Fact]
    public void AbsentHost_IsNotDueBeforeTheDelay_AndItsMembersAreDueOnceItHasPassed()
    {
        var plan = new HostDownRebuildPlan();
        VolumeInfo[] volumes = [Spread("b", VolumeLevel.Raid5, "h1", "h2", "h5"), Spread("a", VolumeLevel.Raid6, "h5", "h2", "h3", "h4")];

        plan.Observe(volumes, h => h != "h5", Start);
        Assert.Empty(plan.Due(volumes, Start, Delay));
        plan.Observe(volumes, h => h != "h5", Start + Delay - TimeSpan.FromSeconds(1));
        Assert.Empty(plan.Due(volumes, Start + Delay - TimeSpan.FromSeconds(1), Delay));

        plan.Observe(volumes, h => h != "h5", Start + Delay);
        var due = plan.Due(volumes, Start + Delay, Delay);
        // One volume at a time, by name: a's member 0, then b's member 2.
        Assert.Equal([("a", 0, "h5"), ("b", 2, "h5")], due.Select(d => (d.Volume.Name, d.Index, d.Host)));
        Assert.Equal(Start, plan.AbsentSince["h5"]);
    }

    [Fact]
    public void HostBackBeforeTheDelay_ForgetsItsClock_SoAnotherAbsenceWaitsTheWholeDelayAgain()
    {
        var plan = new HostDownRebuildPlan();
        VolumeInfo[] volumes = [Spread("v", VolumeLevel.Raid5, "h1", "h2", "h3")];
        plan.Observe(volumes, h => h != "h3", Start);

        var back = plan.Observe(volumes, _ => true, Start + TimeSpan.FromMinutes(9));
        Assert.Equal(["h3"], back);
        Assert.Empty(plan.AbsentSince);

        plan.Observe(volumes, h => h != "h3", Start + TimeSpan.FromMinutes(11));
        Assert.Empty(plan.Due(volumes, Start + TimeSpan.FromMinutes(20), Delay));
        Assert.Single(plan.Due(volumes, Start + TimeSpan.FromMinutes(21), Delay));
    }

    [Fact]
    public void VolumesThatCannotBeRebuiltElsewhere_AreNeverDue()
    {
        var plan = new HostDownRebuildPlan();
        // Striping has no redundancy; a volume of one host's files went with its host.
        VolumeInfo[] volumes = [Spread("stripe", VolumeLevel.Raid0, "h1", "h2"), Spread("local", VolumeLevel.Raid5, "h2", "h2", "h2")];
        plan.Observe(volumes, _ => false, Start);
        Assert.Empty(plan.Due(volumes, Start + Delay * 2, Delay));
    }

    [Fact]
    public void ReplacementHost_IsTheMostFreeHostWithoutAnotherMember_NeverOneThatHoldsOne()
    {
        var volume = Spread("v", VolumeLevel.Raid5, "h1", "h2", "h3", "h4", "h5");
        (string, long)[] pools = [("h2", 900), ("h1", 800), ("h7", 500), ("h6", 400), ("h4", 100)];

        Assert.Equal("h7", MemberPlacement.ChooseReplacementHost(pools, volume, 4, 300));
        // The hosts with more room hold members; none without one has room.
        Assert.Null(MemberPlacement.ChooseReplacementHost(pools, volume, 4, 600));
        // The replaced member's own host comes last: another host without a member first, then it (a failed disk on
        // a live host whose pool still has room).
        Assert.Equal("h7", MemberPlacement.ChooseReplacementHost(pools, volume, 1, 300));
        Assert.Equal("h2", MemberPlacement.ChooseReplacementHost(pools, volume, 1, 850));
        for (var index = 0; index < volume.DiskCount; index++)
        {
            var chosen = MemberPlacement.ChooseReplacementHost(pools, volume, index, 1);
            Assert.Null(MemberPlacement.HoldsOtherMember(volume, index, chosen!));
        }
    }

    [Fact]
    public void ReplacementHost_IsNoneWhenEveryHostWithRoomHoldsAnotherMember()
    {
        var volume = Spread("v", VolumeLevel.Raid5, "h1", "h2", "h3", "h4", "h5");
        (string, long)[] pools = [("h1", 900), ("h2", 900), ("h3", 900), ("h4", 900), ("h6", 10)];

        Assert.Null(MemberPlacement.ChooseReplacementHost(pools, volume, 4, 100));
        var reason = MemberPlacement.NoEligibleHost(volume, 4, pools, 100);
        Assert.Contains("no host can take member 4 of volume 'v'", reason, StringComparison.Ordinal);
        Assert.Contains("h6 (10 bytes free)", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckInterval_IsAQuarterOfTheDelay_WithinOneAndThirtySeconds()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), HostDownRebuildPlan.CheckInterval(TimeSpan.FromMinutes(10)));
        Assert.Equal(TimeSpan.FromSeconds(2.5), HostDownRebuildPlan.CheckInterval(TimeSpan.FromSeconds(10)));
        Assert.Equal(TimeSpan.FromSeconds(1), HostDownRebuildPlan.CheckInterval(TimeSpan.FromSeconds(1)));
    }

    [Theory]
    [InlineData("00:00:00.5")]
    [InlineData("8.00:00:00")]
    public void RebuildDelayOutsideItsRange_IsOneLineNamingTheSetting(string delay)
    {
        var options = new Hosting.CloudOptions { HostDownRebuildDelay = TimeSpan.Parse(delay, System.Globalization.CultureInfo.InvariantCulture) };
        var result = new Hosting.CloudOptionsValidator().Validate(null, options);
        var failure = Assert.Single(result.Failures!);
        Assert.StartsWith("Cloud:HostDownRebuildDelay is ", failure, StringComparison.Ordinal);
        Assert.EndsWith("allowed 00:00:01-7.00:00:00.", failure, StringComparison.Ordinal);
    }
}
