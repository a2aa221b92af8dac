using System.Text.RegularExpressions;
using Cloud.Testing;
using Xunit.Abstractions;

namespace Cloud.Cluster.Tests;

/// <summary>Graceful drain (issue 4): a silo that is stopped finishes its scheduled writes before it leaves.</summary>
[Collection(ClusterCollection.Name)]
public sealed partial class DrainTests(PostgresFixture postgres, ITestOutputHelper output)
{
    /// <summary>Writes in the burst; each on its own stripes so they run as separate batches.</summary>
    private const int BurstWrites = 64;

    /// <summary>Slow disks on the stopped silo, so its queue is still full when SIGTERM arrives.</summary>
    private const string InjectedDiskLatency = "00:00:01";

    [Fact]
    public async Task StoppingASilo_FinishesItsScheduledWrites_BeforeLeaving()
    {
        // s0 is the first server, s1 the only delegation target (s0 and s2 are draining), with slow disks. When s1 is
        // stopped, its queued copies have nowhere else to go (no other silo takes delegated work), so only s1's drain
        // can put them on disk before it leaves.
        await using var silos = await SiloProcesses.StartAsync(postgres.Server, "drain", 3, output.WriteLine, s =>
        {
            s.SetEnvironment(1, "Cloud__InjectedDiskLatency", InjectedDiskLatency);
            s.SetEnvironment(0, "Cloud__Draining", "true");
            s.SetEnvironment(2, "Cloud__Draining", "true");
        });
        var volumeName = "drain";
        var stripeBytes = CrashScenario.ChunkBytes * 3L;
        var blocksPerWrite = (int)(stripeBytes / WriteStream.BlockBytes);
        await using (var client = await silos.ConnectToAsync(0))
        {
            var volume = await CrashScenario.CreateVolumeAsync(client, volumeName);
            await Task.WhenAll(Enumerable.Range(0, BurstWrites).Select(i =>
            {
                var data = new byte[stripeBytes];
                for (var b = 0; b < blocksPerWrite; b++)
                    WriteStream.Fill(
                        data.AsSpan(b * WriteStream.BlockBytes, WriteStream.BlockBytes),
                        seq: i + 1,
                        block: ((long)i * blocksPerWrite) + b);
                return volume.WriteAsync(i * stripeBytes, data);
            }));
        }

        // Every write is acknowledged (held by s0, queued at s1). Stop s1 gracefully right away.
        var exitCode = await silos.StopAsync(1);
        var log = silos.OutputOf(1);
        output.WriteLine(log.Length > 4000 ? log[^4000..] : log);
        Assert.Equal(0, exitCode);
        var draining = DrainingLine().Match(log);
        Assert.True(draining.Success, "s1 logged no drain");
        Assert.True(int.Parse(draining.Groups[1].Value) + int.Parse(draining.Groups[2].Value) > 0,
            $"s1 had nothing to drain when stopped, so this run proves nothing: {draining.Value}");
        Assert.Contains("stopped after draining its writes", log);

        await using var reader = await silos.ConnectToAsync(2);
        var reopened = await CrashScenario.OpenAsync(reader, volumeName);
        var actual = new byte[stripeBytes];
        var expected = new byte[WriteStream.BlockBytes];
        for (var i = 0; i < BurstWrites; i++)
        {
            await reopened.ReadAsync(i * stripeBytes, actual);
            for (var b = 0; b < blocksPerWrite; b++)
            {
                WriteStream.Fill(expected, seq: i + 1, block: ((long)i * blocksPerWrite) + b);
                Assert.True(actual.AsSpan(b * WriteStream.BlockBytes, WriteStream.BlockBytes).SequenceEqual(expected),
                    $"write {i} (block {b}) acknowledged before the stop is not on disk after it");
            }
        }
    }

    [GeneratedRegex(@"draining (\d+) scheduled and (\d+) held writes")]
    private static partial Regex DrainingLine();
}
