using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;
using Cloud.Testing;
using Xunit.Abstractions;

namespace Cloud.Cluster.Tests;

/// <summary>
/// Scrub and repair while other silos write (issue 13, item 1). Every silo's engine writes the same member disks,
/// and an engine's own stripe lock excludes only its own silo's writers; so a scrub that did not hold the cluster's
/// partition locks read stripes another silo was half-way through, reported them as mismatches, and repaired them
/// from what it had read, overwriting that silo's new parity or data.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ScrubTests(PostgresFixture postgres, ITestOutputHelper output)
{
    /// <summary>
    /// A small volume (43 stripes of 48 KiB in 2 partitions), so that a scrub pass is short and comes by each stripe
    /// often: a scrub without the cluster's locks meets a stripe mid-write only while the writer's data and parity
    /// writes are both in flight, a window of well under a millisecond.
    /// </summary>
    private static readonly VolumeSpec Spec = new("scrub", 2L << 20, VolumeLevel.Raid5, 4, 16 << 10, false);

    /// <summary>The silo that scrubs.</summary>
    private const int ScrubSilo = 0;

    /// <summary>Concurrent writers (each sequential on its own region).</summary>
    private const int Writers = 8;

    /// <summary>Writes acknowledged before the first scrub starts.</summary>
    private const int WarmUpAcks = 100;

    /// <summary>Writes acknowledged while scrubs run: enough that an unlocked scrub meets many stripes mid-write.</summary>
    private const int AcksDuringScrubs = 800;

    /// <summary>Bound on waiting for writes to flow; a run that needs longer has failed.</summary>
    private static readonly TimeSpan FlowTimeout = TimeSpan.FromSeconds(180);

    private void Log(string line) => output.WriteLine(line);

    [Fact]
    public async Task ScrubWithRepair_WhileThreeSilosWrite_FindsNoMismatch_AndEveryBlockKeepsItsLastAcknowledgedWrite()
    {
        // s0 scrubs and is only a first server (draining: never a delegation target), so that every write is
        // performed by another silo's engine, which the scrubbing engine's own stripe lock does not exclude.
        await using var silos = await SiloProcesses.StartAsync(postgres.Server, "scrub-repair", 3, Log,
            s => s.SetEnvironment(ScrubSilo, "Cloud__Draining", "true"));
        var clients = new List<CloudClient>();
        try
        {
            // One client per silo: each silo is the first server of a third of the writes.
            for (var i = 0; i < silos.Count; i++) clients.Add(await silos.ConnectToAsync(i));
            await clients[0].CreateVolumeAsync(Spec);
            var handles = new List<CloudVolume>();
            foreach (var client in clients) handles.Add(await client.OpenVolumeAsync(Spec.Name));
            var created = handles[0];
            var scrubber = clients[0].Cluster.GetGrain<IRaidWorkerGrain>(SiloProcesses.NameOf(ScrubSilo));
            var before = await WritesPerformedAsync(clients[0]);

            var stream = new WriteStream(created.SizeBytes, Writers, seed: 4201);
            var turn = 0;
            using var stop = new CancellationTokenSource();
            var writing = stream.RunAsync(() => handles[(int)((uint)Interlocked.Increment(ref turn) % (uint)handles.Count)], stop.Token);
            Assert.True(await stream.WaitForAcksAsync(WarmUpAcks, FlowTimeout), $"no writes flowed (seed {stream.Seed})");

            // Scrub with repair, pass after pass, until the writers have had enough writes acknowledged meanwhile.
            var scrubs = new List<ScrubResult>();
            var target = stream.AcknowledgedCount + AcksDuringScrubs;
            var deadline = stream.Now + FlowTimeout;
            while (stream.AcknowledgedCount < target)
            {
                Assert.True(stream.Now < deadline, $"only {stream.AcknowledgedCount - target + AcksDuringScrubs} of {AcksDuringScrubs} writes were acknowledged during scrubs within {FlowTimeout} (seed {stream.Seed})");
                scrubs.Add(await scrubber.ScrubAsync(created.Name, repair: true));
            }
            Log($"{scrubs.Count} scrub --repair passes on {SiloProcesses.NameOf(ScrubSilo)} while {AcksDuringScrubs} writes were acknowledged: "
                + $"{scrubs.Sum(s => s.StripesChecked)} stripes checked, {scrubs.Sum(s => s.Mismatches)} mismatches, "
                + $"{scrubs.Sum(s => s.ChecksumErrors)} checksum errors, {scrubs.Sum(s => s.Repaired)} repaired");
            await stop.CancelAsync();
            await writing;

            // The writes were performed by the other silos (s0 was a first server only).
            var after = await WritesPerformedAsync(clients[0]);
            var performed = after.ToDictionary(p => p.Key, p => p.Value - before.GetValueOrDefault(p.Key));
            Log("writes performed during the run: " + string.Join(", ", performed.Select(p => $"{p.Key} {p.Value}")));
            Assert.Equal(0L, performed.GetValueOrDefault(SiloProcesses.NameOf(ScrubSilo)));

            // A repair computed from a stripe mid-write loses a write (old data put back) or leaves parity that
            // disagrees with the data another silo wrote.
            foreach (var handle in handles) await handle.FlushAsync();
            await CrashAssert.AssertNothingLostAsync(stream, created, Log);
            await CrashAssert.AssertParityConsistentAsync(clients[0], created.Name, Log);
            // No silo wrote anything wrong, so a scrub that saw any mismatch saw a stripe mid-write.
            Assert.Equal((0L, 0L), (scrubs.Sum(s => s.Mismatches), scrubs.Sum(s => s.ChecksumErrors)));
        }
        finally
        {
            foreach (var client in clients) await client.DisposeAsync();
        }
    }

    /// <summary>Delegated writes each silo has performed, by silo name.</summary>
    private static async Task<Dictionary<string, long>> WritesPerformedAsync(CloudClient client) =>
        (await client.GetClusterStatusAsync()).Silos.ToDictionary(s => s.SiloName, s => s.WritesPerformed);
}
