using System.Globalization;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;
using Cloud.Testing;
using Orleans.Runtime;

// Crash trials (issue 4): three silo processes on a real PostgreSQL, a stream of verifiable writes through the SDK,
// and N times: kill -9 a silo (in turn the busiest delegate, the host of a partition-lock grain, a random silo),
// measure the time until writes flow again, restart it, then pause the writers, FLUSH, read everything back and
// scrub. Right after each kill, a client of a surviving silo also reads and flushes once, not retried: the service
// must wait out the death, not fail them (through NBD, an EIO). Prints acknowledged writes lost, parity mismatches,
// failed reads and flushes right after a kill (all must be 0) and the recovery times.
//
//   dotnet run -c Release --project bench/Cloud.CrashTrials -- --trials 20 [--seed 1]

const int DefaultTrials = 20;
const int MaxTrials = 1000;
const int SiloCount = 3;
const int WarmUpAcks = 100;
var giveUpAfter = TimeSpan.FromSeconds(3);

int trials = DefaultTrials, seed = 1;
for (var i = 0; i < args.Length; i++)
{
    var value = i + 1 < args.Length ? args[i + 1] : null;
    switch (args[i])
    {
        case "--trials" when int.TryParse(value, CultureInfo.InvariantCulture, out trials)
            && trials is >= 1 and <= MaxTrials: i++; break;
        case "--seed" when int.TryParse(value, CultureInfo.InvariantCulture, out seed): i++; break;
        default:
            Console.Error.WriteLine(
                $"crash-trials: bad argument '{args[i]}' ({value}); use --trials 1-{MaxTrials} and --seed N");
            return 2;
    }
}

var random = new Random(seed);
// The probes' own sequence, so the kills follow the same sequence for a seed as before the probes existed.
var probeRandom = new Random(seed + 1);
Console.WriteLine($"crash trials: {trials} kills, seed {seed}, {SiloCount} silos, silo {SiloAssembly.Path}");
await using var postgres = await PostgresServer.StartAsync();
await using var silos = await SiloProcesses.StartAsync(
    postgres, "crash-trials", SiloCount, line => Console.WriteLine($"  {line}"));
var client = await silos.ConnectAsync();
var volume = await CrashScenario.CreateVolumeAsync(client, "trials");
var stream = new WriteStream(volume.SizeBytes, CrashScenario.Writers, seed) { GiveUpAfter = giveUpAfter };
var current = volume;
long lost = 0, mismatches = 0;
var recoveries = new List<TimeSpan>();
int readsFailed = 0, flushesFailed = 0;
var atOnceBound = TimeSpan.FromSeconds(60);

for (var trial = 1; trial <= trials; trial++)
{
    using var stop = new CancellationTokenSource();
    var writing = stream.RunAsync(() => Volatile.Read(ref current), stop.Token);
    if (!await stream.WaitForAcksAsync(WarmUpAcks, TimeSpan.FromSeconds(120)))
        throw new InvalidOperationException($"trial {trial}: writes do not flow before the kill");
    await Task.Delay(random.Next(0, 500));

    // Who dies: the busiest delegate, the host of a random partition's lock grain, or any silo.
    int victim;
    string kind;
    switch (trial % 3)
    {
        case 1:
            victim = await CrashScenario.BusiestDelegateAsync(client, silos, exclude: -1);
            kind = "busiest delegate";
            break;
        case 2:
            var partitions = volume.SizeBytes / SiloProcesses.PartitionTargetBytes;
            var key = CrashScenario.PartitionKey(volume.Info, random.NextInt64(0, partitions));
            var host = await CrashScenario.RetryAsync(async () => await client.Cluster.GetGrain<IManagementGrain>(0)
                .GetActivationAddress(client.Cluster.GetGrain<IPartitionLockGrain>(key)));
            victim = host is null ? random.Next(SiloCount) : silos.IndexOfPort(host.Endpoint.Port);
            kind = $"lock host of {key[^4..]}";
            break;
        default:
            victim = random.Next(SiloCount);
            kind = "random silo";
            break;
    }

    // Connected before the kill, to a silo that survives it, so the read and flush below meet the death at once.
    var survivor = (victim + 1 + probeRandom.Next(SiloCount - 1)) % SiloCount;
    var probe = await silos.ConnectToAsync(survivor);
    var probed = await CrashScenario.OpenAsync(probe, volume.Name);
    var probeOffset = probeRandom.NextInt64(0, volume.SizeBytes / 4096) * 4096;

    var killedAt = stream.Now;
    await silos.KillAsync(victim);
    var readAtOnce = await AtOnceAsync(() => probed.ReadAsync(probeOffset, new byte[4096]));
    var flushAtOnce = await AtOnceAsync(() => probed.FlushAsync());
    if (readAtOnce.Error is not null) readsFailed++;
    if (flushAtOnce.Error is not null) flushesFailed++;
    await probe.DisposeAsync();
    // The client may have been using the dead silo as its gateway: a fresh client finds the live ones.
    var fresh = await silos.ConnectAsync();
    Volatile.Write(ref current, await CrashScenario.OpenAsync(fresh, volume.Name));
    var old = client;
    client = fresh;
    _ = old.DisposeAsync().AsTask();
    if (!await stream.WaitForAcksAsync(WarmUpAcks, TimeSpan.FromSeconds(120)))
        throw new InvalidOperationException(
            $"trial {trial}: writes did not flow again within 120 s of killing {SiloProcesses.NameOf(victim)}");
    var recovery = await stream.MeasureRecoveryAsync(killedAt, WriteStream.RecoveryQuiet, TimeSpan.FromSeconds(120));
    recoveries.Add(recovery);

    await silos.StartSiloAsync(victim);
    await silos.WaitForActiveAsync(SiloCount);
    await stop.CancelAsync();
    await writing;
    await CrashScenario.RetryAsync(async () => { await current.FlushAsync(); return 0; });
    var (trialLost, details) = await CrashScenario.RetryAsync(() => stream.VerifyAsync(current));
    var scrub = await CrashScenario.RetryAsync(() => client.ScrubAsync(volume.Name, repair: false));
    lost = Math.Max(lost, trialLost);
    mismatches += scrub.Mismatches;
    Console.WriteLine($"trial {trial,2}: killed {SiloProcesses.NameOf(victim)} ({kind}); writes flowing again after {recovery.TotalSeconds:F2} s; "
        + $"{stream.AcknowledgedCount} acknowledged so far, {trialLost} lost, {scrub.Mismatches} parity mismatches, {scrub.ChecksumErrors} checksum errors; "
        + $"through {SiloProcesses.NameOf(survivor)} at once: read {readAtOnce}, flush {flushAtOnce}"
        + (trialLost > 0 ? $" -- {details}" : ""));
}
await client.DisposeAsync();

var sorted = recoveries.Order().ToList();
var median = sorted.Count % 2 == 1
    ? sorted[sorted.Count / 2]
    : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
Console.WriteLine();
Console.WriteLine($"trials:                          {trials} (seed {seed})");
Console.WriteLine($"acknowledged writes:             {stream.AcknowledgedCount} ({stream.FailedCount} unacknowledged)");
Console.WriteLine(
    $"acknowledged writes lost:        {lost} (blocks not holding their last acknowledged write, worst check)");
Console.WriteLine($"parity mismatches after recovery: {mismatches}");
Console.WriteLine(
    $"kill -> writes flowing again:    median {median.TotalSeconds:F2} s, worst {sorted[^1].TotalSeconds:F2} s");
Console.WriteLine($"failed right after the kill:     {readsFailed} reads, {flushesFailed} flushes (of {trials} each)");
return lost == 0 && mismatches == 0 && readsFailed == 0 && flushesFailed == 0 ? 0 : 1;

// One call, not retried, within a bound: how long it took, or why it failed.
async Task<AtOnce> AtOnceAsync(Func<Task> call)
{
    var start = System.Diagnostics.Stopwatch.GetTimestamp();
    try
    {
        await call().WaitAsync(atOnceBound);
        return new AtOnce(System.Diagnostics.Stopwatch.GetElapsedTime(start), null);
    }
    catch (Exception ex)
    {
        Console.Error.WriteLine($"  probe failed, in full: {ex}");
        return new AtOnce(System.Diagnostics.Stopwatch.GetElapsedTime(start), $"{ex.GetType().Name}: {ex.Message}");
    }
}

/// <summary>A call made right after a kill: its time, and its error if it failed.</summary>
internal sealed record AtOnce(TimeSpan Took, string? Error)
{
    public override string ToString() =>
        Error is null ? $"ok in {Took.TotalSeconds:F2} s" : $"FAILED after {Took.TotalSeconds:F2} s ({Error})";
}
