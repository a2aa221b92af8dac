using System.Globalization;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;

namespace Cloud.HostBed;

/// <summary>One kill of the failover trials.</summary>
/// <param name="Trial">1-based trial number.</param>
/// <param name="Victim">Index of the killed host (the catalog's host).</param>
/// <param name="Recovery">Per survivor's writer, in host order: kill to writes flowing again.</param>
/// <param name="Lost">Blocks not holding their last acknowledged write, over every volume.</param>
/// <param name="Mismatches">Parity mismatches plus checksum errors the scrub found, over every volume.</param>
/// <param name="CheckError">Why the check after the kill (restart, FLUSH, read-back, scrub) could not finish, or
/// null.</param>
/// <param name="Control">Per survivor's writer, the same measure from a moment just before the kill with nothing
/// killed: what the writers' own stalls make of it (the floor under <paramref name="Recovery"/>).</param>
public sealed record FailoverTrial(
    int Trial,
    int Victim,
    IReadOnlyList<TimeSpan> Recovery,
    long Lost,
    long Mismatches,
    string? CheckError,
    IReadOnlyList<TimeSpan> Control)
{
    /// <summary>The trial's figure: the slowest survivor's recovery.</summary>
    public TimeSpan WorstRecovery => Recovery.Max();

    /// <summary>The control's figure: the slowest survivor's, with nothing killed.</summary>
    public TimeSpan WorstControl => Control.Max();
}

/// <summary>
/// The failover measurement on the multi-host bed: per trial, writers through every host but the one holding the
/// volume catalog grain (each survivor writes its own page-blob volume through its own gateway), a <c>kill -9</c> of
/// the catalog's host, the time until each survivor's writes flow again, the victim restarted and back in the
/// membership table, then a check that no acknowledged write was lost and a scrub.
/// </summary>
/// <remarks>
/// "Writes flowing again" is <see cref="WriteStream.RecoveryTime"/>: the end of the chain of stalls after the kill
/// (writes that took over <see cref="WriteStream.StallThreshold"/>, failed, or were given up after
/// <see cref="GiveUpAfter"/>), each issued within <see cref="WriteStream.RecoveryQuiet"/> of the previous one's end;
/// with no stall, the first write acknowledged after the kill.
/// </remarks>
public sealed class FailoverTrials
{
    /// <summary>Most trials one run may ask for.</summary>
    public const int MaxTrials = 1000;

    /// <summary>Writes each survivor's writer must have acknowledged before a kill, and again after it.</summary>
    public const int WarmUpAcks = 100;

    /// <summary>A writer gives a write up after this long, so one stuck call does not hide the recovery.</summary>
    public static readonly TimeSpan GiveUpAfter = TimeSpan.FromSeconds(3);

    /// <summary>The failover bound (docs/CLUSTER.md): a survivor slower than this has its stalls logged.</summary>
    public static readonly TimeSpan FailoverBound = TimeSpan.FromSeconds(15);

    /// <summary>Bound on writes flowing at all; a trial that needs longer has failed.</summary>
    public static readonly TimeSpan FlowTimeout = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Most random delay between the warm-up and the kill, so kills land at different points of a write.
    /// </summary>
    private const int MaxKillDelayMs = 500;

    private readonly HostBed _bed;
    private readonly Action<string> _log;
    private readonly Random _random;
    private readonly string[] _volumes;
    private readonly WriteStream[] _streams;

    private FailoverTrials(HostBed bed, int seed, Action<string> log, string[] volumes, double? writesPerSecond)
    {
        _bed = bed;
        _log = log;
        _random = new Random(seed);
        _volumes = volumes;
        _streams =
        [
            .. volumes.Select((_, i) => new WriteStream(PageBlobVolumes.VolumeBytes, CrashScenario.Writers, seed + i)
            {
                GiveUpAfter = GiveUpAfter,
                WritesPerSecond = writesPerSecond
            })
        ];
    }

    /// <summary>Acknowledged writes over every trial so far.</summary>
    public long AcknowledgedCount => _streams.Sum(s => (long)s.AcknowledgedCount);

    /// <summary>Unacknowledged writes over every trial so far.</summary>
    public long FailedCount => _streams.Sum(s => (long)s.FailedCount);

    /// <summary>
    /// Creates one page-blob volume per survivor (the bed's hosts less one) through <paramref name="client"/>.
    /// </summary>
    public static async Task<FailoverTrials> CreateAsync(
        HostBed bed,
        CloudClient client,
        int seed,
        Action<string> log,
        double? writesPerSecond = null)
    {
        ArgumentNullException.ThrowIfNull(bed);
        ArgumentNullException.ThrowIfNull(client);
        if (bed.Hosts.Count < 2)
            throw new ArgumentException(
                $"the failover trials need at least 2 hosts, not {bed.Hosts.Count}", nameof(bed));
        var volumes = Enumerable.Range(0, bed.Hosts.Count - 1).Select(i => $"failover-{i}").ToArray();
        foreach (var name in volumes) await PageBlobVolumes.CreateAsync(client, name).ConfigureAwait(false);
        return new FailoverTrials(bed, seed, log, volumes, writesPerSecond);
    }

    /// <summary>Runs trial <paramref name="trial"/>: kill the catalog's host, measure, restart it, check.</summary>
    public async Task<FailoverTrial> RunTrialAsync(CloudClient client, int trial)
    {
        var victim = await CrashScenario.RetryAsync(() => _bed.CatalogHostAsync(client)).ConfigureAwait(false);
        var survivors = Enumerable.Range(0, _bed.Hosts.Count).Where(i => i != victim).ToArray();
        var writers = new List<HostWriter>();
        try
        {
            for (var k = 0; k < survivors.Length; k++)
                writers.Add(
                    await HostWriter.StartAsync(_bed, survivors[k], _volumes[k], _streams[k]).ConfigureAwait(false));
            await WaitForAcksAsync(writers, $"trial {trial}: writes do not flow before the kill").ConfigureAwait(false);
            // The control: the same measure from a moment with nothing killed, on the same writers just before.
            await Task.Delay(_random.Next(0, MaxKillDelayMs)).ConfigureAwait(false);
            var controlAt = writers.Select(w => w.Stream.Now).ToArray();
            var control = await Task.WhenAll(writers.Select(
                (w, k) => w.Stream.MeasureRecoveryAsync(controlAt[k], WriteStream.RecoveryQuiet, FlowTimeout)))
                .ConfigureAwait(false);
            await Task.Delay(_random.Next(0, MaxKillDelayMs)).ConfigureAwait(false);

            var killedAt = writers.Select(w => w.Stream.Now).ToArray();
            await _bed.KillAsync(victim).ConfigureAwait(false);
            using var stopSampling = new CancellationTokenSource();
            var load = SampleLoadAsync(writers[0].Client, stopSampling.Token);
            await WaitForAcksAsync(
                writers,
                $"trial {trial}: writes did not flow again within {FlowTimeout} of killing {_bed.Hosts[victim].Name}").ConfigureAwait(false);
            // Each stream has its own clock, so each writer's recovery is reckoned on its own.
            var recovery = await Task.WhenAll(writers.Select(
                (w, k) => w.Stream.MeasureRecoveryAsync(killedAt[k], WriteStream.RecoveryQuiet, FlowTimeout)))
                .ConfigureAwait(false);
            await stopSampling.CancelAsync().ConfigureAwait(false);
            var samples = await load.ConfigureAwait(false);
            for (var k = 0; k < writers.Count; k++)
            {
                if (recovery[k] > FailoverBound) LogStalls(trial, writers[k], killedAt[k], recovery[k]);
            }
            if (recovery.Any(r => r > FailoverBound))
            {
                _log($"trial {trial}: survivors' load after the kill (queued copies, pending MiB, disk ms, CPU %): {samples}");
                // The bed's own copy at its end covers only the last trials: keep the hosts' logs of this one now.
                await _bed.KeepLogsAsync($"trial{trial}").ConfigureAwait(false);
            }

            try
            {
                var (lost, mismatches) = await RestartAndCheckAsync(trial, victim, writers).ConfigureAwait(false);
                return new FailoverTrial(trial, victim, recovery, lost, mismatches, null, control);
            }
            catch (Exception ex)
                when (ex is TimeoutException or Orleans.Runtime.OrleansException or CloudRequestException)
            {
                // The recovery was measured; a check that cannot finish is a result of its own, not a lost figure.
                if (!_bed.IsRunning(victim)) await _bed.StartHostAsync(victim).ConfigureAwait(false);
                await _bed.WaitForActiveAsync(_bed.Hosts.Count).ConfigureAwait(false);
                return new FailoverTrial(
                    trial, victim, recovery, 0, 0, $"{ex.GetType().Name}: {ex.Message.Split('\n')[0]}", control);
            }
        }
        finally
        {
            foreach (var writer in writers) await writer.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Restarts the victim, stops the writers, then flushes, reads back and scrubs every volume.</summary>
    private async Task<(long Lost, long Mismatches)> RestartAndCheckAsync(
        int trial,
        int victim,
        IReadOnlyList<HostWriter> writers)
    {
        // The victim rejoins while the survivors still write, as a restarted machine would.
        await _bed.StartHostAsync(victim).ConfigureAwait(false);
        await _bed.WaitForActiveAsync(_bed.Hosts.Count).ConfigureAwait(false);
        foreach (var writer in writers) await writer.StopAsync().ConfigureAwait(false);

        long lost = 0, mismatches = 0;
        foreach (var writer in writers)
        {
            await CrashScenario.RetryAsync(
                async () => { await writer.Volume.FlushAsync().ConfigureAwait(false); return 0; })
                .ConfigureAwait(false);
            var (volumeLost, details) = await CrashScenario.RetryAsync(() => writer.Stream.VerifyAsync(writer.Volume))
                .ConfigureAwait(false);
            var scrub = await CrashScenario.RetryAsync(
                () => writer.Client.ScrubAsync(writer.Volume.Name, repair: false))
                .ConfigureAwait(false);
            lost += volumeLost;
            mismatches += scrub.Mismatches + scrub.ChecksumErrors;
            if (volumeLost > 0)
                await ReportLossAsync(trial, writer, writers, volumeLost, details).ConfigureAwait(false);
            else if (scrub.Mismatches + scrub.ChecksumErrors > 0)
            {
                // The scrubbing silo names each wrong stripe in its log: keep every host's for the post-mortem.
                _log($"trial {trial}: scrub of {writer.Volume.Name} found {scrub.Mismatches} mismatches, {scrub.ChecksumErrors} checksum errors");
                LogHostOutputs();
            }
        }
        return (lost, mismatches);
    }

    /// <summary>
    /// Logs a loss with the evidence: the same check read through every other survivor (so a stale cache on one host's
    /// read path shows as a difference), and the tail of each host's output.
    /// </summary>
    private async Task ReportLossAsync(
        int trial,
        HostWriter writer,
        IReadOnlyList<HostWriter> writers,
        long lost,
        string details)
    {
        _log(
            $"trial {trial}: {writer.Volume.Name} lost {lost} blocks read through {_bed.Hosts[writer.Host].Name} (seed {writer.Stream.Seed}): {details}");
        foreach (var other in writers.Where(w => w != writer))
        {
            var volume = await CrashScenario.OpenAsync(other.Client, writer.Volume.Name).ConfigureAwait(false);
            var (otherLost, otherDetails) = await CrashScenario.RetryAsync(() => writer.Stream.VerifyAsync(volume))
                .ConfigureAwait(false);
            _log(
                $"trial {trial}: {writer.Volume.Name} read through {_bed.Hosts[other.Host].Name}: {otherLost} blocks lost: {otherDetails}");
        }
        LogHostOutputs();
    }

    /// <summary>
    /// Logs what a slow recovery was made of: the stalls in 5 s buckets and the commonest errors, so that a trial
    /// names whether writes failed (and with what) or only waited.
    /// </summary>
    private void LogStalls(int trial, HostWriter writer, TimeSpan killedAt, TimeSpan recovery)
    {
        var errors = writer.Stream.Records
            .Where(r => r.Issued >= killedAt && r.Issued <= killedAt + recovery && r.Error is not null)
            .GroupBy(r => r.Error!.Split('\n')[0])
            .OrderByDescending(g => g.Count())
            .Take(3)
            .Select(g => $"{g.Count()}x {g.Key}");
        _log($"trial {trial}: {_bed.Hosts[writer.Host].Name}'s writer stalled {recovery.TotalSeconds:F1} s: "
            + $"{writer.Stream.DescribeStalls(killedAt)}; errors: {string.Join(" | ", errors)}");
    }

    /// <summary>
    /// The cluster's load table once a second from the kill until <paramref name="stop"/> (at most 40 samples), as one
    /// line ("+3s h2 q12 1.5MiB 40ms 90%, h3 ..."), so that a slow trial shows whether the survivors' queues were
    /// full (writes paced to the disks) or empty (writes waiting on something else).
    /// </summary>
    private static async Task<string> SampleLoadAsync(CloudClient client, CancellationToken stop)
    {
        var samples = new List<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!stop.IsCancellationRequested && samples.Count < 40)
        {
            string sample;
            try
            {
                var status = await client.GetClusterStatusAsync().WaitAsync(TimeSpan.FromSeconds(1), stop)
                    .ConfigureAwait(false);
                sample = string.Join(", ", status.Silos.Select(s => string.Create(
                    CultureInfo.InvariantCulture,
                    $"{s.SiloName} q{s.QueueDepth} {s.PendingDelegatedBytes / 1048576.0:F1}MiB {s.DiskLatencyMs:F0}ms {s.CpuPercent:F0}%")));
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { break; }
            catch (Exception ex) when (ex is TimeoutException or Orleans.Runtime.OrleansException)
            {
                sample = "no answer";
            }
            samples.Add($"+{clock.Elapsed.TotalSeconds:F0}s {sample}");
            try { await Task.Delay(TimeSpan.FromSeconds(1), stop).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
        }
        return string.Join(" | ", samples);
    }

    /// <summary>Logs the tail of each host's output.</summary>
    private void LogHostOutputs()
    {
        foreach (var host in _bed.Hosts)
        {
            var output = _bed.OutputOf(host.Index);
            _log(
                $"--- {host.Name} (last 4000 characters of its output):\n{(output.Length <= 4000 ? output : output[^4000..])}");
        }
    }

    /// <summary>
    /// Runs <paramref name="trials"/> trials, prints each and the summary; returns the process exit code.
    /// </summary>
    /// <param name="writesPerSecond">Each survivor's writes per second (an open-loop load), or null for writers that
    /// write back to back (the bed's page blobs saturated).</param>
    public static async Task<int> RunAsync(HostBed bed, int trials, int seed, Action<string> log, double? writesPerSecond = null)
    {
        ArgumentNullException.ThrowIfNull(log);
        if (trials is < 1 or > MaxTrials)
            throw new ArgumentOutOfRangeException(nameof(trials), $"{trials} trials is not allowed; use 1-{MaxTrials}");
        await using var client = await bed.ConnectAsync().ConfigureAwait(false);
        var runner = await CreateAsync(bed, client, seed, log, writesPerSecond).ConfigureAwait(false);
        var results = new List<FailoverTrial>();
        var failed = 0;
        for (var trial = 1; trial <= trials; trial++)
        {
            FailoverTrial result;
            try
            {
                result = await runner.RunTrialAsync(client, trial).ConfigureAwait(false);
            }
            catch (Exception ex)
                when (ex is TimeoutException or InvalidOperationException or Orleans.Runtime.OrleansException)
            {
                // One trial's failure is a result too; the next trial needs every host up again.
                failed++;
                log($"trial {trial,2}: FAILED: {ex.GetType().Name}: {ex.Message.Split('\n')[0]}");
                foreach (var host in bed.Hosts.Where(h => !bed.IsRunning(h.Index)))
                    await bed.StartHostAsync(host.Index).ConfigureAwait(false);
                await bed.WaitForActiveAsync(bed.Hosts.Count).ConfigureAwait(false);
                continue;
            }
            results.Add(result);
            var perWriter = string.Join(
                ", ", result.Recovery.Select(r => r.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture) + " s"));
            var perControl = string.Join(
                ", ", result.Control.Select(r => r.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture) + " s"));
            log($"trial {trial,2}: killed {bed.Hosts[result.Victim].Name} (catalog host); writes flowing again after {perWriter} "
                + $"(survivors' writers; with nothing killed just before: {perControl}); "
                + (result.CheckError is null
                    ? $"{result.Lost} lost, {result.Mismatches} scrub mismatches"
                    : $"CHECK FAILED: {result.CheckError}"));
        }

        if (results.Count == 0)
        {
            log($"all {trials} trials failed");
            return 1;
        }
        var sorted = results.Select(r => r.WorstRecovery).Order().ToList();
        var median = Median(sorted);
        var controls = results.Select(r => r.WorstControl).Order().ToList();
        long lost = results.Sum(r => r.Lost), mismatches = results.Sum(r => r.Mismatches);
        log("");
        log(
            $"trials:                           {trials} kills of the catalog's host (seed {seed}, {bed.Hosts.Count} hosts, "
            + (writesPerSecond is { } r ? $"{r:0.#} writes/s per survivor)" : "writers back to back)"));
        log($"acknowledged writes:              {runner.AcknowledgedCount} ({runner.FailedCount} unacknowledged)");
        var unchecked_ = results.Count(r => r.CheckError is not null);
        log($"trials failed (no figure):        {failed}");
        log($"trials whose check failed:        {unchecked_} (restart, FLUSH, read-back or scrub did not finish)");
        log($"acknowledged writes lost:         {lost}");
        log($"scrub mismatches + checksum errs: {mismatches}");
        log(
            $"kill -> writes flowing again:     median {Seconds(median)}, worst {Seconds(sorted[^1])} (slowest survivor per trial), "
            + $"{sorted.Count(r => r <= FailoverBound)} of {sorted.Count} within {FailoverBound.TotalSeconds:0} s");
        log(
            $"same measure, nothing killed:     median {Seconds(Median(controls))}, worst {Seconds(controls[^1])} (the writers' own stalls: the floor under the figure above)");
        return lost == 0 && mismatches == 0 && failed == 0 && unchecked_ == 0 ? 0 : 1;
    }

    private static TimeSpan Median(List<TimeSpan> sorted) =>
        sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture) + " s";

    private static async Task WaitForAcksAsync(IReadOnlyList<HostWriter> writers, string failure)
    {
        var flowing = await Task.WhenAll(writers.Select(w => w.Stream.WaitForAcksAsync(WarmUpAcks, FlowTimeout)))
            .ConfigureAwait(false);
        if (flowing.All(f => f)) return;
        throw new InvalidOperationException(
            $"{failure}: " + string.Join("; ", writers.Where((_, k) => !flowing[k]).Select(w => w.Describe())));
    }
}
