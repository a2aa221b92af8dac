using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Tests;

/// <summary>
/// A silo's copy of the load table is refreshed from one grain; while that grain is unreachable (its silo just died)
/// the copy is not refreshed, and entries must not all go stale for it: then every other host looked dead, and a
/// volume across six hosts, two of them killed, opened with five members missing and refused every write.
/// </summary>
public sealed class LoadTableFreshnessTests
{
    private sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static SiloLoad Entry(string name, DateTimeOffset published) =>
        new(name, $"127.0.0.1{name[^1]}:11111@1", 0, 0, 0, 10, false, published, 0, 0, 0, false, "host-" + name);

    [Fact]
    public void EntriesStayFresh_WhileTheTableIsNotRefreshed_AndASiloThatStopsPublishingGoesStaleOnceItIs()
    {
        var clock = new Clock();
        var table = new LoadTable(Options.Create(new CloudOptions()), clock);
        var start = clock.Now;
        table.Update([Entry("h1", start), Entry("h2", start)]);

        // The table grain is unreachable for longer than an entry lives: nothing says h1 or h2 stopped.
        clock.Now = start + CloudOptions.DefaultLoadEntryTimeToLive * 5;
        Assert.NotNull(table.Find("h1"));
        Assert.NotNull(table.Find("h2"));
        Assert.Equal(2, table.Entries.Count(e => table.Find(e.SiloName) is not null));

        // Refreshed again: h1 published since, h2 did not (it died).
        table.Update([Entry("h1", clock.Now), Entry("h2", start)]);
        Assert.NotNull(table.Find("h1"));
        Assert.Null(table.Find("h2"));
    }

    [Fact]
    public void ATableThatStartsAgainEmpty_StillKnowsWhereItsSilosWere()
    {
        // The table grain was placed again after its silo died: only h1 has published to it yet. Placement of a unit
        // bound to h2's host must still find h2 there (CI saw a write refused with "no live silo of host").
        var clock = new Clock();
        var table = new LoadTable(Options.Create(new CloudOptions()), clock);
        var h2 = Entry("h2", clock.Now);
        table.Update([Entry("h1", clock.Now), h2]);
        clock.Now += TimeSpan.FromSeconds(1);
        table.Update([Entry("h1", clock.Now)]);

        Assert.Null(table.Find(h2.SiloAddress));
        Assert.Equal("host-h2", table.LastKnown(h2.SiloAddress)?.HostName);
        // An older publish arriving late does not replace a newer one.
        table.Update([Entry("h2", clock.Now - TimeSpan.FromMinutes(1)) with { Draining = true }]);
        Assert.False(table.LastKnown(h2.SiloAddress)?.Draining);
        Assert.Null(table.LastKnown("127.0.0.19:11111@1"));
    }
}
