using System.Text.RegularExpressions;
using Cloud.Cluster.Tests.Harness;
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
    private const string InjectedDiskLatency = "00:00:00.100";

    [Fact]
    public async Task StoppingASilo_FinishesItsScheduledWrites_BeforeLeaving()
    {
        // s1 and s2 are draining, so s0 is both the first server and the only target: when it stops, the copies it
        // acknowledged exist nowhere else, and only the drain can put them on disk.
        await using var silos = await SiloProcesses.StartAsync(postgres.Server, "drain", 3, output.WriteLine, s =>
        {
            s.SetEnvironment(0, "Cloud__InjectedDiskLatency", InjectedDiskLatency);
            s.SetEnvironment(1, "Cloud__Draining", "true");
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
                    WriteStream.Fill(data.AsSpan(b * WriteStream.BlockBytes, WriteStream.BlockBytes), seq: i + 1, block: ((long)i * blocksPerWrite) + b);
                return volume.WriteAsync(i * stripeBytes, data);
            }));
        }

        // Every write is acknowledged (replicated in s0's memory). Stop s0 gracefully right away.
        var exitCode = await silos.StopAsync(0);
        var log = silos.OutputOf(0);
        output.WriteLine(log.Length > 4000 ? log[^4000..] : log);
        Assert.Equal(0, exitCode);
        var draining = DrainingLine().Match(log);
        Assert.True(draining.Success, "s0 logged no drain");
        Assert.True(int.Parse(draining.Groups[1].Value) + int.Parse(draining.Groups[2].Value) > 0,
            $"s0 had nothing to drain when stopped, so this run proves nothing: {draining.Value}");
        Assert.Contains("stopped after draining its writes", log);

        await using var reader = await silos.ConnectToAsync(1);
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
