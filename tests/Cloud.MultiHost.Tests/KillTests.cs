using Cloud.HostBed;
using Cloud.Testing;
using Xunit.Abstractions;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// <c>kill -9</c> of the host that holds the volume catalog grain and some of the volumes' partition-lock grains,
/// while writers run through the other two hosts (issue 14, item 5): their writes flow again within the failover
/// bound, no acknowledged write is lost, the volumes are still listed, and every partition's timestamps keep growing.
/// Each survivor writes its own RAID-5 volume on page blobs through its own gateway, so each survivor's recovery is
/// measured on its own.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class KillTests(ThreeHostsOnPageBlobs hosts, ITestOutputHelper output) : IClassFixture<ThreeHostsOnPageBlobs>
{
    /// <summary>Writes each writer must have acknowledged before the kill; enough to use every partition.</summary>
    private const int WarmUpAcks = 150;

    /// <summary>Writes each writer must have acknowledged after the kill; enough to use every partition again.</summary>
    private const int AfterKillAcks = 200;

    /// <summary>
    /// The failover bound: from the kill until a survivor's writes flow again. The membership settings declare a
    /// killed silo dead within about 5 s (docs/CLUSTER.md); the rest is placing the catalog and the lock grains anew and
    /// the writers' given-up writes (3 s each) on a 2-core machine that runs three silos, PostgreSQL and Azurite.
    /// </summary>
    private static readonly TimeSpan FailoverBound = TimeSpan.FromSeconds(15);

    private Cloud.HostBed.HostBed Bed => hosts.Bed;

    private void Log(string line) => output.WriteLine(line);

    [Fact]
    public async Task KillingTheCatalogAndLockHost_WritesThroughTheOtherHostsFlowAgainWithinTheBound_LosingNothing()
    {
        string[] names = ["kill-0", "kill-1"];
        await using (var admin = await Bed.ConnectAsync())
        {
            foreach (var name in names) await PageBlobVolumes.CreateAsync(admin, name);
        }
        await using var lookup = await Bed.ConnectAsync();
        var victim = await Bed.CatalogHostAsync(lookup);
        var survivors = Enumerable.Range(0, Bed.Hosts.Count).Where(i => i != victim).ToArray();
        // Placement puts a grain near its first caller: activate the volumes' partition-lock grains through the
        // victim's gateway, so the kill takes the catalog and the lock grains together, as the issue names.
        await using (var viaVictim = await Bed.ConnectToAsync(victim))
        {
            foreach (var name in names)
            {
                var info = (await viaVictim.OpenVolumeAsync(name)).Info;
                await PartitionLocks.ControlsAsync(PartitionLocks.Grains(viaVictim, info, Bed.PartitionTargetBytes));
            }
        }
        Log($"catalog on {Bed.Hosts[victim].Name}; writers through {string.Join(", ", survivors.Select(i => Bed.Hosts[i].Name))}");

        var writers = new List<HostWriter>();
        using var sampling = new CancellationTokenSource();
        var sampler = SampleQueuesAsync(lookup, sampling.Token);
        try
        {
            for (var k = 0; k < survivors.Length; k++)
            {
                var stream = new WriteStream(PageBlobVolumes.VolumeBytes, CrashScenario.Writers, seed: 1401 + k) { GiveUpAfter = FailoverTrials.GiveUpAfter };
                writers.Add(await HostWriter.StartAsync(Bed, survivors[k], names[k], stream));
            }
            await AssertFlowingAsync(writers, WarmUpAcks, "no writes flowed before the kill");

            // The victim must be what the issue names: the catalog's host and a host of partition locks of the volumes.
            var survivor = writers[0].Client;
            var locks = writers.Select(w => PartitionLocks.Grains(survivor, w.Volume.Info, Bed.PartitionTargetBytes)).ToArray();
            var victimLocks = new List<int>[locks.Length];
            for (var v = 0; v < locks.Length; v++)
            {
                victimLocks[v] = [];
                for (var p = 0; p < locks[v].Length; p++)
                    if (await Bed.HostOfAsync(survivor, locks[v][p]) == victim) victimLocks[v].Add(p);
                Log($"{Bed.Hosts[victim].Name} holds partitions [{string.Join(",", victimLocks[v])}] of {names[v]}'s {locks[v].Length}");
            }
            // Placement follows load, not a hash, so one volume's locks may all sit elsewhere; the victim must hold some.
            Assert.True(victimLocks.Any(l => l.Count > 0),
                $"{Bed.Hosts[victim].Name} holds none of the {locks.Sum(l => l.Length)} partition locks of {string.Join(" and ", names)}");
            var before = await Task.WhenAll(locks.Select(PartitionLocks.ControlsAsync));
            Assert.Equal(victim, await Bed.CatalogHostAsync(survivor));

            var killedAt = writers.Select(w => w.Stream.Now).ToArray();
            foreach (var w in writers)
                Log($"before the kill, through {Bed.Hosts[w.Host].Name}: {w.Stream.DescribeStalls(TimeSpan.Zero)}");
            Log($"before the kill: {await DescribeQueuesAsync(survivor)}");
            Log($"killing {Bed.Hosts[victim].Name} at {DateTime.UtcNow:HH:mm:ss.fff} UTC");
            await Bed.KillAsync(victim);
            await AssertFlowingAsync(writers, AfterKillAcks, $"writes did not flow again after killing {Bed.Hosts[victim].Name}");
            Log($"after {AfterKillAcks} acknowledgements past the kill: {await DescribeQueuesAsync(survivor)}");
            for (var k = 0; k < writers.Count; k++)
            {
                var recovery = await writers[k].Stream.MeasureRecoveryAsync(
                    killedAt[k], WriteStream.RecoveryQuiet, FailoverTrials.FlowTimeout);
                Log($"writes through {Bed.Hosts[writers[k].Host].Name} flowing again {recovery.TotalSeconds:F2} s after the kill");
                Assert.True(recovery <= FailoverBound,
                    $"writes through {Bed.Hosts[writers[k].Host].Name} flowed again only {recovery.TotalSeconds:F2} s after the kill, over the {FailoverBound.TotalSeconds} s bound; {writers[k].Describe()}; stalls after the kill: {writers[k].Stream.DescribeStalls(killedAt[k])}");
            }

            var listed = await CrashScenario.RetryAsync(survivor.ListVolumesAsync);
            Assert.Equal(names, listed.Select(v => v.Name).Where(names.Contains).Order());
            Assert.Contains(await CrashScenario.RetryAsync(() => Bed.CatalogHostAsync(survivor)), survivors);

            foreach (var writer in writers) await writer.StopAsync();
            for (var v = 0; v < writers.Count; v++)
            {
                // Acknowledged writes reach disk after their acknowledgement, under a lock: after the FLUSH none is held.
                await CrashScenario.RetryAsync(async () => { await writers[v].Volume.FlushAsync(); return 0; });
                await AssertNothingLostAsync(writers[v]);
                // The reactivated lock grains hand out timestamps above every one the dead ones handed out: one new
                // write to each partition (the control object shows the last timestamp this activation handed out).
                var info = writers[v].Volume.Info;
                for (var p = 0; p < locks[v].Length; p++)
                {
                    var at = PartitionLocks.FirstByte(info, Bed.PartitionTargetBytes, p);
                    await writers[v].Volume.WriteAsync(at, Blocks.Pattern(4096, seed: p), forceUnitAccess: true);
                }
                var after = await PartitionLocks.ControlsAsync(locks[v]);
                for (var p = 0; p < after.Length; p++)
                {
                    Assert.True(after[p].LastTimestamp > before[v][p].LastTimestamp,
                        $"{names[v]} partition {p}{(victimLocks[v].Contains(p) ? " (was on the victim)" : "")}: last timestamp {after[p].LastTimestamp} after the kill is not above {before[v][p].LastTimestamp} before it");
                    Assert.True(after[p].Holders == 0,
                        $"{names[v]} partition {p}{(victimLocks[v].Contains(p) ? " (was on the victim)" : "")} still has a holder after the writers stopped and FLUSH returned: {after[p]}");
                }
            }
        }
        finally
        {
            await sampling.CancelAsync();
            await sampler;
            foreach (var writer in writers) await writer.DisposeAsync();
            // The next class's bed is its own, but leave this one whole for any later test of this class.
            if (!Bed.IsRunning(victim)) await Bed.StartHostAsync(victim);
        }
    }

    /// <summary>After a FLUSH: every block holds its last acknowledged write (or a later unacknowledged one), and scrub finds nothing.</summary>
    private async Task AssertNothingLostAsync(HostWriter writer)
    {
        var (lost, details) = await CrashScenario.RetryAsync(() => writer.Stream.VerifyAsync(writer.Volume));
        Log($"{writer.Volume.Name}: verified {writer.Stream.AcknowledgedCount} acknowledged writes ({writer.Stream.FailedCount} unacknowledged): {lost} blocks lost");
        Assert.True(lost == 0, $"{lost} blocks of {writer.Volume.Name} do not hold their last acknowledged write (seed {writer.Stream.Seed}): {details}");
        var scrub = await CrashScenario.RetryAsync(() => writer.Client.ScrubAsync(writer.Volume.Name, repair: false));
        Log($"scrub of {writer.Volume.Name}: {scrub.StripesChecked} stripes, {scrub.Mismatches} parity mismatches, {scrub.ChecksumErrors} checksum errors");
        Assert.True(scrub.StripesChecked > 0, "scrub checked no stripes");
        Assert.Equal(0, scrub.Mismatches);
        Assert.Equal(0, scrub.ChecksumErrors);
    }

    private async Task AssertFlowingAsync(IReadOnlyList<HostWriter> writers, int acks, string what)
    {
        var flowing = await Task.WhenAll(writers.Select(w => w.Stream.WaitForAcksAsync(acks, FailoverTrials.FlowTimeout)));
        Assert.True(flowing.All(f => f), $"{what}: {string.Join("; ", writers.Select(w => w.Describe()))}\n"
            + string.Join("\n", Bed.Hosts.Select(h => $"--- {h.Name}:\n{Tail(Bed.OutputOf(h.Index))}")));
    }

    /// <summary>
    /// Each silo's RAID-worker queue (copies queued or running) and delegated bytes it holds uncommitted, from the load
    /// table: the work a kill leaves the survivors to redo, laid beside the recovery time.
    /// </summary>
    private static async Task<string> DescribeQueuesAsync(Cloud.Client.CloudClient client)
    {
        try
        {
            var status = await client.GetClusterStatusAsync();
            return string.Join(", ", status.Silos.OrderBy(s => s.SiloName).Select(
                s => $"{s.SiloName}: {s.QueueDepth} queued, {s.PendingDelegatedBytes / 1024} KiB delegated, {s.WritesPerformed} written"));
        }
        catch (Exception ex) when (ex is TimeoutException or Orleans.Runtime.OrleansException)
        {
            return $"(no status: {ex.GetType().Name})";
        }
    }

    /// <summary>Logs every silo's queue every 5 s until cancelled: the pace of the disks beside the writers'.</summary>
    private async Task SampleQueuesAsync(Cloud.Client.CloudClient client, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            Log($"{DateTime.UtcNow:HH:mm:ss} {await DescribeQueuesAsync(client)}");
            try { await Task.Delay(TimeSpan.FromSeconds(5), stop); }
            catch (OperationCanceledException) { return; }
        }
    }

    private static string Tail(string text) => text.Length <= 3000 ? text : text[^3000..];
}
