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
        /// <summary>Runs at each read of the snapshot (a load publish landing while placement reads the membership).</summary>
        public Action? OnRead { get; set; }

        public ClusterMembershipSnapshot CurrentSnapshot
        {
            get
            {
                OnRead?.Invoke();
                return _snapshot;
            }
        }

        private readonly ClusterMembershipSnapshot _snapshot = new(
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

    private static (MemberPlacement Placement, LoadTable Table, FakeTimeProvider Clock) Create(params string[] active) =>
        Create(out _, active);

    private static (MemberPlacement Placement, LoadTable Table, FakeTimeProvider Clock) Create(
        out Membership membership,
        params string[] active)
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));
        var options = Options.Create(new CloudOptions());
        var table = new LoadTable(options, clock);
        membership = new Membership(active);
        // HostDisks is not reached: these cases only ask which hosts have a pool.
        return (new MemberPlacement(table, null!, membership, options, clock), table, clock);
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
        // The wait's continuation runs on the thread pool: it may take its next delay after an advance made here, so
        // advance (well inside the wait's deadline) until it has answered.
        for (var i = 0; i < 10 && !hosts.IsCompleted; i++)
        {
            clock.Advance(CloudOptions.DefaultLoadPublishPeriod);
            await Task.WhenAny(hosts, Task.Delay(TimeSpan.FromMilliseconds(50)));
        }

        Assert.Equal(["host-h1", "host-h2", "host-h3"], (await hosts).Select(h => h.Host).Order());
    }

    [Fact]
    public async Task APublishLandingWhilePlacementReadsTheMembership_IsCounted()
    {
        // CI once saw the case above answer with two hosts: the third host's entry arrived after placement had counted
        // the hosts and before it asked the membership whether an active silo was still unpublished (none was, so it
        // answered with the two it had counted). Here the publish lands at exactly that moment, every time.
        var (placement, table, clock) = Create(out var membership, Address(1), Address(2), Address(3));
        table.Update([Entry(1, clock.GetUtcNow()), Entry(2, clock.GetUtcNow())]);
        membership.OnRead = () =>
        {
            membership.OnRead = null;
            table.Update([Entry(1, clock.GetUtcNow()), Entry(2, clock.GetUtcNow()), Entry(3, clock.GetUtcNow())]);
        };

        var hosts = placement.PoolHostsAsync(h => h.Count >= 3);
        for (var i = 0; i < 10 && !hosts.IsCompleted; i++)
        {
            clock.Advance(CloudOptions.DefaultLoadPublishPeriod);
            await Task.WhenAny(hosts, Task.Delay(TimeSpan.FromMilliseconds(50)));
        }

        Assert.True(hosts.IsCompleted, "placement still waiting with every active silo published");
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
