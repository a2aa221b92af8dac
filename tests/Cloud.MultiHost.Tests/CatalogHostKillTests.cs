using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// Kill -9 of the host holding the catalog grain and the volumes' partition-lock grains while writers run through the
/// other two (issue 14, item 5): writes flow again within the failover bound, no acknowledged write is lost (per-block
/// history check), scrub finds nothing, the volumes are still listed and the partition clocks go on above every
/// timestamp handed out before. One trial of the failover bench (<see cref="FailoverTrials"/>), with the writers at a
/// fixed rate below what the bed's single Azurite process sustains: writers back to back saturate it, and their own
/// stalls then outlast any bound with nothing killed (docs/BENCHMARKS.md, session 12). On the page-blob bed of
/// <see cref="PageBlobVolumeTests"/>, so that it costs no bed of its own.
/// </summary>
public sealed partial class PageBlobVolumeTests
{
    /// <summary>Each survivor's writes per second: a third of what the bench's saturated runs averaged.</summary>
    private const double KillTrialWritesPerSecond = 10;

    [Fact]
    public async Task KillingTheCatalogsHost_UnderWriters_WritesFlowAgainWithinTheBound_AndNothingIsLost()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        await using var client = await Bed.ConnectAsync();
        var trials = await FailoverTrials.CreateAsync(Bed, client, seed, output.WriteLine, KillTrialWritesPerSecond);
        var volumes = (await client.ListVolumesAsync()).Where(v => v.Name.StartsWith("failover-", StringComparison.Ordinal))
            .ToList();
        Assert.Equal(Bed.Hosts.Count - 1, volumes.Count);

        var trial = await trials.RunTrialAsync(client, 1);
        output.WriteLine(
            $"killed {Bed.Hosts[trial.Victim].Name}: writes flowing again after {string.Join(", ", trial.Recovery.Select(r => $"{r.TotalSeconds:F2} s"))} "
            + $"(nothing killed: {string.Join(", ", trial.Control.Select(r => $"{r.TotalSeconds:F2} s"))}); {trial.Lost} lost, {trial.Mismatches} mismatches");

        Assert.Null(trial.CheckError);
        Assert.Equal(0, trial.Lost);
        Assert.Equal(0, trial.Mismatches);
        Assert.True(
            trial.WorstRecovery <= FailoverTrials.FailoverBound,
            $"writes flowed again {trial.WorstRecovery.TotalSeconds:F2} s after the kill, over the {FailoverTrials.FailoverBound.TotalSeconds} s bound");
        var listed = (await CrashScenario.RetryAsync(() => client.ListVolumesAsync())).Select(v => v.Name).ToList();
        Assert.All(volumes, v => Assert.Contains(v.Name, listed));
        // The partition-lock grains all lived on the victim: their new activations go on above every timestamp the
        // volumes' blocks were written with (the trial's check has verified those blocks already).
        foreach (var v in volumes)
        {
            var grains = PartitionLocks.Grains(client, v, Bed.PartitionTargetBytes);
            var seen = await CrashScenario.RetryAsync(() => PartitionLocks.ControlsAsync(grains));
            Assert.True(seen.Max(c => c.LastTimestamp) > 0, $"{v.Name}: no partition handed out a timestamp");
            var volume = await CrashScenario.OpenAsync(client, v.Name);
            for (var p = 0; p < grains.Length; p++)
            {
                var offset = PartitionLocks.FirstByte(v, Bed.PartitionTargetBytes, p);
                await CrashScenario.RetryAsync(async () =>
                {
                    await volume.WriteAsync(offset, new byte[Cloud.Client.CloudVolume.BlockSizeBytes]);
                    return 0;
                });
            }
            // The activation that answers may be newer than the one that took the write (CrashTests met one that had
            // handed out nothing): then its first timestamp is what it will hand out.
            var after = await PartitionLocks.ControlsAsync(grains);
            for (var p = 0; p < grains.Length; p++)
                Assert.True(
                    Math.Max(after[p].LastTimestamp, after[p].FirstTimestamp) > seen[p].LastTimestamp,
                    $"{v.Name} partition {p}: timestamp {after[p].LastTimestamp} (activation's first {after[p].FirstTimestamp}) not above {seen[p].LastTimestamp}");
        }
    }
}
