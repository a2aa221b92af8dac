using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;
using Cloud.Testing;
using Orleans.Core.Internal;
using Orleans.Runtime;
using Xunit.Abstractions;

namespace Cloud.Cluster.Tests;

/// <summary>
/// A partition-lock grain reactivated after its silo died (issue 13, item 3): it keeps its holders and pending
/// versions in memory only, so the new activation takes them back from the live silos before it serves anything.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class LockReclaimTests(PostgresFixture postgres, ITestOutputHelper output)
{
    /// <summary>
    /// How long s2, the only delegation target, takes for each disk write: far longer than the cluster needs to declare
    /// a killed silo dead (about 5 s), so the lock grain is reactivated while the acknowledged write is still in
    /// s2's memory, and the read below meets exactly the window the reclaim closes.
    /// </summary>
    private static readonly TimeSpan SlowWrite = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Lock leases longer than the slow write, so that s2's grant outlives it and the test sees the reclaim alone, not
    /// a lease running out mid-write.
    /// </summary>
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(60);

    private void Log(string line) => output.WriteLine(line);

    [Fact]
    public async Task KillingTheLockHost_BetweenAcknowledgementAndDiskWrite_ReadStillSeesTheWrite()
    {
        // s2 takes every delegated write and is slow to put it on disk; of s0 and s1, one hosts the partition's lock
        // grain and is killed, and the other is the first server (the client's gateway).
        await using var silos = await SiloProcesses.StartAsync(postgres.Server, "reclaim", 3, Log, s =>
        {
            for (var i = 0; i < 3; i++)
            {
                s.SetEnvironment(i, "Cloud__FixedDelegationTarget", SiloProcesses.NameOf(2));
                s.SetEnvironment(i, "Cloud__LockLease", Lease.ToString());
            }
            s.SetEnvironment(2, "Cloud__InjectedDiskLatency", SlowWrite.ToString());
        });
        VolumeInfo info;
        await using (var setup = await silos.ConnectToAsync(1))
            info = (await CrashScenario.CreateVolumeAsync(setup, "reclaim")).Info;
        // The victim is s0 or s1, whichever hosts a partition's lock grain (placement weighs load, so it may be
        // either); the other one is the first server, the gateway of the client that writes and reads.
        var (partition, offset, victim) = await PartitionLockedOnAsync(silos, info, candidates: [0, 1]);
        var firstServer = 1 - victim;
        await using var client = await silos.ConnectToAsync(firstServer);
        var volume = await client.OpenVolumeAsync(info.Name);

        var data = Blocks.Pattern(BlockBytes, seed: 1313);
        await volume.WriteAsync(offset, data);
        var acknowledgedAt = DateTimeOffset.UtcNow;
        await silos.KillAsync(victim);
        Log($"write at {offset} acknowledged through {SiloProcesses.NameOf(firstServer)}; {SiloProcesses.NameOf(victim)}, host of {partition}, killed");

        // The read reaches a new activation of the lock grain once s1 is declared dead; without the reclaim that
        // activation knows no pending version and no holder, and the read returns what the disk holds: zeroes.
        var read = new byte[data.Length];
        try
        {
            await CrashScenario.RetryAsync(async () => { await volume.ReadAsync(offset, read); return 0; });
        }
        catch (Exception ex)
        {
            throw new Xunit.Sdk.XunitException($"the read failed: {ex.Message}\n{silos.OutputTails()}");
        }
        var readAt = DateTimeOffset.UtcNow;
        Log($"read answered {(readAt - acknowledgedAt).TotalSeconds:F1} s after the acknowledgement");
        Assert.True(
            data.AsSpan().SequenceEqual(read),
            $"the read after the lock host died returned {Describe(read)}, not the acknowledged write");

        // And the reactivated grain knows the lock it reclaimed until its holder committed: no holder remains, and the
        // version is settled.
        await volume.FlushAsync();
        var control = await client.Cluster.GetGrain<IPartitionLockGrain>(partition).GetControlAsync();
        Assert.Equal(0, control.PendingWrites);
    }

    [Fact]
    public async Task KillingTheLockHost_AReadAtOnceThroughAnotherSilo_WaitsForTheGrainToMove_AndIsAnswered()
    {
        // Of s0 and s1, one hosts a partition's lock grain and is killed; the other reads. s2 writes, so the reader
        // holds no write lease on the partition (under one, its read would not ask the grain) and no read lease.
        await using var silos = await SiloProcesses.StartAsync(postgres.Server, "lock-read", 3, Log);
        VolumeInfo info;
        await using (var setup = await silos.ConnectToAsync(2))
            info = (await CrashScenario.CreateVolumeAsync(setup, "lockread")).Info;
        var (partition, offset, victim) = await PartitionLockedOnAsync(silos, info, candidates: [0, 1]);
        var reader = 1 - victim;
        var data = Blocks.Pattern(BlockBytes, seed: 1414);
        await using (var writer = await silos.ConnectToAsync(2))
        {
            var written = await writer.OpenVolumeAsync(info.Name);
            await written.WriteAsync(offset, data);
            await written.FlushAsync();
        }
        await using var client = await silos.ConnectToAsync(reader);
        // The front-end grain itself, not the SDK's volume handle, which asks again on a lost silo and would hide a
        // failure of the first server (the path NBD takes); a flush first, so the gateway has placed it.
        var frontEnd = client.Cluster.GetGrain<IFirstServerGrain>(0);
        await frontEnd.FlushAsync(info.Name);

        await silos.KillAsync(victim);
        Log($"{SiloProcesses.NameOf(victim)}, host of {partition}, killed; {SiloProcesses.NameOf(reader)} reads at once");

        // One read, not retried here: until the cluster declares the death (seconds), calls to the lock grain fail;
        // the first server must wait for the grain to be placed anew, not answer the read with an error (through NBD,
        // an EIO that a kernel client passes to its filesystem).
        byte[] read;
        try
        {
            read = await frontEnd.ReadAsync(info.Name, offset, data.Length);
        }
        catch (Exception ex)
        {
            throw new Xunit.Sdk.XunitException(
                $"the read right after the lock host died failed: {ex.GetType().Name}: {ex.Message}\n{silos.OutputTails()}");
        }
        Assert.True(data.AsSpan().SequenceEqual(read), $"the read returned {Describe(read)}, not the write");
    }

    private const int BlockBytes = 4096;

    /// <summary>Rounds of placing the partition-lock grains before the test gives up finding one on a candidate.</summary>
    private const int PlacementRounds = 10;

    /// <summary>
    /// Activates the volume's partition-lock grains and returns the first partition whose grain lives on one of
    /// <paramref name="candidates"/>, with the byte offset of its first block and that silo's index.
    /// </summary>
    private static async Task<(string Key, long Offset, int Host)> PartitionLockedOnAsync(
        SiloProcesses silos, VolumeInfo info, int[] candidates)
    {
        await using var client = await silos.ConnectToAsync(candidates[0]);
        var stripeBytes = (long)(info.DiskCount - 1) * info.ChunkSizeBytes;
        var partitionBytes = Math.Max(1, SiloProcesses.PartitionTargetBytes / stripeBytes) * stripeBytes;
        var management = client.Cluster.GetGrain<IManagementGrain>(0);
        var hosts = new List<string>();
        // Placement weighs the silos' load, and a silo that has just started (JIT) may look busy for a few seconds, so
        // that every grain lands elsewhere: deactivate those and place them again, a few rounds.
        for (var round = 0; round < PlacementRounds; round++)
        {
            hosts.Clear();
            for (long p = 0; p * partitionBytes < info.SizeBytes; p++)
            {
                var key = CrashScenario.PartitionKey(info, p);
                var grain = client.Cluster.GetGrain<IPartitionLockGrain>(key);
                await grain.GetControlAsync();
                var host = await management.GetActivationAddress(grain);
                var index = host is null ? -1 : silos.IndexOfPort(host.Endpoint.Port);
                if (candidates.Contains(index)) return (key, p * partitionBytes, index);
                hosts.Add($"{p}:{(index < 0 ? "?" : SiloProcesses.NameOf(index))}");
                await grain.AsReference<IGrainManagementExtension>().DeactivateOnIdle();
            }
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
        throw new InvalidOperationException(
            $"no partition-lock grain of volume {info.Name} was placed on {string.Join(" or ", candidates.Select(SiloProcesses.NameOf))} in {PlacementRounds} rounds: {string.Join(' ', hosts)}");
    }

    private static string Describe(byte[] read) =>
        read.All(b => b == 0) ? "zeroes" : $"other data (first bytes {Convert.ToHexString(read.AsSpan(0, 8))})";
}
