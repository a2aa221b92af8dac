using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Disks;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Cloud.Grains.Tests;

/// <summary>
/// Placement reads the hosts' pools from the load table, which drops a silo that has not published within the entry
/// lifetime. On the six-host bed under CI's load a RAID-6 create was refused ("needs 6 hosts ... but 5 have one") a
/// moment after the cluster status had listed six pools: one host's publish was late. A silo that the membership still
/// has as active is waited for (its next publish), for a bounded time; a cluster that has too few silos answers at once.
/// </summary>
public sealed class PlacementLatePublishTests
{
    private sealed class Membership(params string[] active) : IClusterMembershipService
    {
        public ClusterMembershipSnapshot CurrentSnapshot { get; } = new(
            active.ToImmutableDictionary(
                a => SiloAddress.FromParsableString(a),
                a => new ClusterMember(SiloAddress.FromParsableString(a), SiloStatus.Active, a)),
            new MembershipVersion(1));

        public IAsyncEnumerable<ClusterMembershipSnapshot> MembershipUpdates => throw new NotSupportedException();

        public ValueTask Refresh(MembershipVersion minimumVersion = default, CancellationToken cancellationToken = default) =>
            ValueTask.CompletedTask;

        public Task<bool> TryKill(SiloAddress siloAddress) => throw new NotSupportedException();
    }

    private static string Address(int host) => $"127.0.0.1{host}:11111@1";

    private static SiloLoad Entry(int host, DateTimeOffset published) =>
        new($"h{host}", Address(host), 0, 0, 0, 10, false, published, 0, 0, 0, false, $"host-h{host}",
            PoolCapacityBytes: 1L << 30, PoolFreeBytes: (1L << 30) - host);

    private static (MemberPlacement Placement, LoadTable Table, FakeTimeProvider Clock) Create(params string[] active)
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));
        var options = Options.Create(new CloudOptions());
        var table = new LoadTable(options, clock);
        // HostDisks is not reached: these cases only ask which hosts have a pool.
        return (new MemberPlacement(table, null!, new Membership(active), options, clock), table, clock);
    }

    [Fact]
    public async Task AnActiveSiloWhoseEntryIsLate_IsWaitedFor()
    {
        var (placement, table, clock) = Create(Address(1), Address(2), Address(3));
        table.Update([Entry(1, clock.GetUtcNow()), Entry(2, clock.GetUtcNow())]);

        var hosts = placement.PoolHostsAsync(h => h.Count >= 3);
        Assert.False(hosts.IsCompleted, "placement answered with two hosts while the third was still an active member");

        clock.Advance(CloudOptions.DefaultLoadPublishPeriod);
        table.Update([Entry(1, clock.GetUtcNow()), Entry(2, clock.GetUtcNow()), Entry(3, clock.GetUtcNow())]);
        clock.Advance(CloudOptions.DefaultLoadPublishPeriod);

        Assert.Equal(["host-h1", "host-h2", "host-h3"], (await hosts).Select(h => h.Host).Order());
    }

    [Fact]
    public async Task TooFewSilos_AnswersAtOnce()
    {
        var (placement, table, clock) = Create(Address(1), Address(2));
        table.Update([Entry(1, clock.GetUtcNow()), Entry(2, clock.GetUtcNow())]);

        var hosts = placement.PoolHostsAsync(h => h.Count >= 3);

        Assert.True(hosts.IsCompleted, "placement waited although every active silo had published");
        Assert.Equal(2, (await hosts).Count);
    }

    [Fact]
    public async Task AnActiveSiloThatNeverPublishes_IsWaitedForAtMostThreeEntryLifetimes()
    {
        var (placement, table, clock) = Create(Address(1), Address(2), Address(3));
        table.Update([Entry(1, clock.GetUtcNow()), Entry(2, clock.GetUtcNow())]);

        var hosts = placement.PoolHostsAsync(h => h.Count >= 3);
        var step = CloudOptions.DefaultLoadPublishPeriod;
        for (var waited = TimeSpan.Zero; waited < CloudOptions.DefaultLoadEntryTimeToLive * 3 - step; waited += step)
        {
            // The others keep publishing; the third never does.
            clock.Advance(step);
            table.Update([Entry(1, clock.GetUtcNow()), Entry(2, clock.GetUtcNow())]);
            Assert.False(hosts.IsCompleted, $"placement stopped waiting after {waited + step}");
        }
        clock.Advance(step * 2);

        Assert.Equal(2, (await hosts).Count);
    }
}
