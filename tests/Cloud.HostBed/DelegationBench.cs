using System.Diagnostics;
using System.Globalization;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;

namespace Cloud.HostBed;

/// <summary>One way of slowing the bed's last host.</summary>
/// <param name="Name">What the report calls it.</param>
/// <param name="Key">What <c>--case</c> calls it.</param>
/// <param name="DiskLatency">Latency injected into each of the host's disk operations (<c>Cloud:InjectedDiskLatency</c>).</param>
/// <param name="CpuQuotaPercent">The host's CPU cap in percent of one core, or 0 for none.</param>
public sealed record SlowHostCase(string Name, string Key, TimeSpan DiskLatency, int CpuQuotaPercent);

/// <summary>
/// Load-based delegation against a fixed target, across processes (<c>bench/hosts.sh --delegation</c>): for each way of
/// slowing one host (injected disk latency of 20 ms and 100 ms, a CPU cap), two fresh beds of
/// <see cref="HostBedOptions.Hosts"/> hosts run the same workload, one delegating by load and one with the slowed host as
/// every silo's <c>Cloud:Delegation:FixedTarget</c>, and the ratio of their write rates is printed per case.
/// </summary>
/// <remarks>
/// The workload: a durable RAID-5 volume with one member in each host's disk pool (every host reaches every member
/// through the members' hosts' disk services, so every silo is a possible target; page blobs would put one Azurite
/// process, seconds per write on a loaded 2-core machine, under every host alike), and <see cref="WritersPerHost"/> SDK writers of random 4 KiB blocks through each host's gateway, so every
/// host is a first server. Durable writes are acknowledged once the target wrote them, which puts the target's disks
/// on the writer's path, as they are for a client that flushes.
/// </remarks>
public static class DelegationBench
{
    /// <summary>Default for the measured seconds of each run.</summary>
    public const int DefaultSeconds = 20;

    /// <summary>Most measured seconds of one run.</summary>
    public const int MaxSeconds = 3600;

    /// <summary>Writers per host (first server): enough concurrency that a fast target is not idle.</summary>
    public const int WritersPerHost = 12;

    /// <summary>
    /// Acknowledged writes through each host before the measured window starts, in both modes alike: opening the
    /// volume's engine on a silo reads its members' superblocks, which on a loaded machine takes seconds, and the
    /// load-based mode opens it on more silos than the fixed one.
    /// </summary>
    public const int WarmUpWritesPerHost = 20;

    /// <summary>Most seconds of <c>--warm-up</c>.</summary>
    public const int MaxWarmUpSeconds = 600;

    /// <summary>
    /// Default for <c>--warm-up</c>: seconds of writing before the measured window. A silo spends its first minute or
    /// so of this workload compiling: tiered compilation with PGO compiles each hot method up to three times, and a
    /// perf profile 35-50 s after the start had the silos' thread-pool workers in the JIT and the runtime for about
    /// half their samples and in compiled code for a tenth. Measured then, both modes are bound by the compiler
    /// (20 ms case: 430-508 against 351-445 IOPS); after 110 s, by the write path (1,441 against 658).
    /// </summary>
    public const int DefaultWarmUpSeconds = 90;

    /// <summary>Bound on the warm-up; a bed that cannot write this long is broken, and the run says so.</summary>
    public static readonly TimeSpan WarmUpMax = TimeSpan.FromSeconds(120);

    /// <summary>The ratio the issue asks load-based delegation to reach in every case.</summary>
    public const double TargetRatio = 1.5;

    private const int BlockBytes = 4096;

    /// <summary>The volume: with the bed's 1 MiB partitions, 16 or more units to spread over the hosts.</summary>
    private const long VolumeBytes = 16L << 20;

    private const int ChunkBytes = 16 << 10;

    /// <summary>The cases of the issue: 20 ms and 100 ms of disk latency, and a host capped to a quarter of one core.</summary>
    public static readonly IReadOnlyList<SlowHostCase> Cases =
    [
        new("disk +20 ms", "20ms", TimeSpan.FromMilliseconds(20), 0),
        new("disk +100 ms", "100ms", TimeSpan.FromMilliseconds(100), 0),
        new("CPU 25 % of a core", "cpu", TimeSpan.Zero, 25),
    ];

    /// <summary>The <c>--case</c> keys, for the usage line.</summary>
    public static string CaseKeys => string.Join("|", Cases.Select(c => c.Key));

    /// <summary>
    /// Runs each of <paramref name="cases"/> (every case when null) in both modes; returns 0 when every ratio reaches
    /// <see cref="TargetRatio"/>, else 1.
    /// </summary>
    public static async Task<int> RunAsync(
        PostgresServer postgres,
        HostBedOptions template,
        int seconds,
        int seed,
        Action<string> log,
        IReadOnlyList<SlowHostCase>? cases = null,
        int warmUpSeconds = DefaultWarmUpSeconds,
        int runs = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        ArgumentNullException.ThrowIfNull(postgres);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(log);
        var slowIndex = template.Hosts - 1;
        var slowName = $"h{slowIndex + 1}";
        log($"delegation bench: {template.Hosts} hosts, {slowName} slowed; durable RAID-5 over the hosts' disk pools, {WritersPerHost} "
            + $"writers of random 4 KiB per host; warm-up until {WarmUpWritesPerHost} writes through each host"
            + (warmUpSeconds > 0 ? $" and {warmUpSeconds} s of writing" : "") + $", {seconds} s measured per run; seed {seed}; "
            + $"{Environment.ProcessorCount} cores; load average {LoadAverage()}"
            + (runs > 1 ? $"; {runs} runs per case, the modes' order alternating" : ""));
        var rows = new List<(SlowHostCase Case, List<Run> LoadBased, List<Run> Fixed, List<double> Ratios)>();
        foreach (var slowCase in cases ?? Cases)
        {
            var row = (Case: slowCase, LoadBased: new List<Run>(), Fixed: new List<Run>(), Ratios: new List<double>());
            Task<Run> Mode(string? fixedTarget) =>
                RunOnceAsync(postgres, template, slowCase, slowIndex, fixedTarget, seconds, warmUpSeconds, seed, log);
            for (var r = 0; r < runs; r++)
            {
                // Each run a fresh bed per mode; which mode goes first alternates from run to run, so a machine that
                // drifts over the runs (its load, the page cache) does not favour one mode.
                Run loadBased, fixedRun;
                if (r % 2 == 0)
                {
                    loadBased = await Mode(null).ConfigureAwait(false);
                    fixedRun = await Mode(slowName).ConfigureAwait(false);
                }
                else
                {
                    fixedRun = await Mode(slowName).ConfigureAwait(false);
                    loadBased = await Mode(null).ConfigureAwait(false);
                }
                row.LoadBased.Add(loadBased);
                row.Fixed.Add(fixedRun);
                row.Ratios.Add(Ratio(loadBased, fixedRun));
                log($"  {slowCase.Name}{(runs > 1 ? $" (run {r + 1} of {runs})" : "")}: load-based {loadBased.Iops:0} IOPS, "
                    + $"fixed ({slowName}) {fixedRun.Iops:0} IOPS, ratio {Ratio(loadBased, fixedRun):0.00}x");
            }
            rows.Add(row);
        }

        log("");
        if (runs > 1) log($"medians of {runs} runs (each a pair of fresh beds); the ratio is the median of the runs' ratios");
        log($"{"case",-20} {"load-based",22} {"fixed (" + slowName + ")",22} {"ratio",7}  load average (1 min) during runs");
        foreach (var (c, l, f, ratios) in rows)
        {
            double lIops = Stats.Median(l.Select(x => x.Iops)), fIops = Stats.Median(f.Select(x => x.Iops));
            log($"{c.Name,-20} {lIops,8:0} IOPS {ToMiBps(lIops),5:0.0} MiB/s {fIops,8:0} IOPS {ToMiBps(fIops),5:0.0} MiB/s "
                + $"{Stats.Median(ratios),6:0.00}x  {l[^1].LoadAverage} / {f[^1].LoadAverage}");
            if (runs > 1) log($"{"",-20} runs: {string.Join(", ", ratios.Select(x => $"{x:0.00}x"))}");
        }
        var losing = rows.Where(r => Stats.Median(r.Ratios) < TargetRatio).Select(r => r.Case.Name).ToList();
        log(losing.Count == 0
            ? $"load-based delegation reached {TargetRatio}x in every case{(runs > 1 ? " (median of the runs)" : "")}"
            : $"below {TargetRatio}x: {string.Join(", ", losing)}");
        return losing.Count == 0 ? 0 : 1;
    }

    private static double Ratio(Run loadBased, Run fixedRun) =>
        fixedRun.Iops > 0 ? loadBased.Iops / fixedRun.Iops : double.PositiveInfinity;

    /// <summary>One measured run: acknowledged writes per second, and the load average before and after.</summary>
    private sealed record Run(double Iops, string LoadAverage);

    private static double ToMiBps(double iops) => iops * BlockBytes / (1024.0 * 1024.0);

    private static async Task<Run> RunOnceAsync(
        PostgresServer postgres,
        HostBedOptions template,
        SlowHostCase slowCase,
        int slowIndex,
        string? fixedTarget,
        int seconds,
        int warmUpSeconds,
        int seed,
        Action<string> log)
    {
        var options = new HostBedOptions
        {
            Hosts = template.Hosts,
            ClusterId = "delegation",
            Nbd = false,
            DiskPools = true,
        };
        if (fixedTarget is not null) options.Environment["Cloud__Delegation__FixedTarget"] = fixedTarget;
        if (slowCase.DiskLatency > TimeSpan.Zero)
            options.HostEnvironment[$"h{slowIndex + 1}"] = new(StringComparer.Ordinal)
            {
                ["Cloud__InjectedDiskLatency"] = slowCase.DiskLatency.ToString("c", CultureInfo.InvariantCulture),
            };
        var mode = fixedTarget is null ? "load-based" : $"fixed ({fixedTarget})";
        await using var bed = await StartBedAsync(postgres, options, log).ConfigureAwait(false);
        using var cap = slowCase.CpuQuotaPercent > 0
            ? CpuCap.Apply(bed.ProcessId(slowIndex), slowCase.CpuQuotaPercent, $"cloud-delegation-{Environment.ProcessId}")
            : null;
        var name = "deleg-" + Guid.NewGuid().ToString("N")[..8];
        await using (var admin = await bed.ConnectToAsync(0).ConfigureAwait(false))
        {
            // Placement of the members needs every host's pool in the load table.
            await Eventually.TrueAsync(
                async () => (await admin.GetClusterStatusAsync().ConfigureAwait(false)).Silos
                    .Count(e => e.PoolCapacityBytes > 0) == bed.Hosts.Count,
                "every host publishes its disk pool").ConfigureAwait(false);
            // The catalog places members by its own silo's load table, which can lag the status asked above by a period.
            await Eventually.TrueAsync(
                async () =>
                {
                    try
                    {
                        await admin.CreateVolumeAsync(new VolumeSpec(
                            name, VolumeBytes, VolumeLevel.Raid5, bed.Hosts.Count, ChunkBytes, Durable: true)).ConfigureAwait(false);
                        return true;
                    }
                    catch (CloudRequestException ex) when (ex.Message.Contains("disk pool", StringComparison.Ordinal))
                    {
                        return false;
                    }
                },
                "the catalog's silo sees every host's disk pool",
                Eventually.Bound,
                TimeSpan.FromMilliseconds(500)).ConfigureAwait(false);
        }

        var clients = new List<CloudClient>();
        try
        {
            var volumes = new List<CloudVolume>();
            for (var i = 0; i < bed.Hosts.Count; i++)
            {
                clients.Add(await bed.ConnectToAsync(i).ConfigureAwait(false));
                volumes.Add(await clients[i].OpenVolumeAsync(name).ConfigureAwait(false));
            }
            var counted = new long[volumes.Count];
            var failed = new Failures();
            using var stop = new CancellationTokenSource();
            var writers = volumes.SelectMany((volume, host) => Enumerable.Range(0, WritersPerHost).Select(w =>
                Task.Run(() => WriteAsync(volume, new Random(seed + host * WritersPerHost + w),
                    () => Interlocked.Increment(ref counted[host]), failed, stop.Token)))).ToArray();
            var warming = Stopwatch.StartNew();
            var warmUpAtLeast = TimeSpan.FromSeconds(warmUpSeconds);
            while ((counted.Any(c => Interlocked.Read(ref c) < WarmUpWritesPerHost) && warming.Elapsed < WarmUpMax)
                   || warming.Elapsed < warmUpAtLeast)
                await Task.Delay(100).ConfigureAwait(false);
            var before = LoadAverage();
            var atStart = counted.Sum(c => Interlocked.Read(ref c));
            var clock = Stopwatch.StartNew();
            await Task.Delay(TimeSpan.FromSeconds(seconds)).ConfigureAwait(false);
            var acknowledged = counted.Sum(c => Interlocked.Read(ref c)) - atStart;
            var elapsed = clock.Elapsed;
            var status = await clients[0].GetClusterStatusAsync().ConfigureAwait(false);
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(writers).ConfigureAwait(false);
            var run = new Run(acknowledged / elapsed.TotalSeconds, $"{before}-{LoadAverage()}");
            log($"    {slowCase.Name}, {mode}: warm-up {warming.Elapsed.TotalSeconds:0.0} s, {acknowledged} writes in {elapsed.TotalSeconds:0.0} s = {run.Iops:0} IOPS"
                + (failed.Count == 0 ? "" : $"; {failed.Count} failed, the last: {failed.Last}")
                + (cap is null ? "" : $"; {cap.Describe()}"));
            foreach (var e in status.Silos)
                log($"      {e.SiloName}: score {e.Score:0.0} (queue {e.QueueDepth}, {e.PendingDelegatedBytes >> 10} KiB pending, "
                    + $"disk {e.DiskLatencyMs:0.0} ms, floor {e.DiskFloorMs:0.0} ms, CPU {e.CpuPercent:0} %, scheduling delay {e.SchedulingDelayMs:0.0} ms), delegations reused {e.DelegationsReused} new "
                    + $"{e.DelegationsNew}, copies written {e.WritesPerformed}");
            return run;
        }
        finally
        {
            foreach (var client in clients) await client.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Most bed starts per run: on a machine at load average 50+, a joining silo is sometimes declared dead.</summary>
    private const int MaxBedStarts = 3;

    private static async Task<HostBed> StartBedAsync(PostgresServer postgres, HostBedOptions options, Action<string> log)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await HostBed.StartAsync(postgres, options).ConfigureAwait(false);
            }
            catch (Exception ex) when (attempt < MaxBedStarts)
            {
                log($"    bed start {attempt} failed ({ex.GetType().Name}: {ex.Message.Split('\n')[0]}); starting a fresh bed");
            }
        }
    }

    /// <summary>
    /// Writes random 4 KiB blocks until <paramref name="stop"/>, counting the acknowledged ones. A failed write (a timeout under a slowed host) is not counted and the writer goes
    /// on: the benchmark measures throughput, and the crash trials measure loss.
    /// </summary>
    private static async Task WriteAsync(
        CloudVolume volume,
        Random random,
        Action count,
        Failures failed,
        CancellationToken stop)
    {
        var block = new byte[BlockBytes];
        random.NextBytes(block);
        var blocks = VolumeBytes / BlockBytes;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await volume.WriteAsync(random.NextInt64(blocks) * BlockBytes, block, cancellationToken: stop)
                    .ConfigureAwait(false);
                count();
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (!stop.IsCancellationRequested)
            {
                failed.Add(ex);
            }
        }
    }

    /// <summary>Writes not acknowledged, and the last one's error, for the report.</summary>
    private sealed class Failures
    {
        private long _count;
        private volatile string _last = "";

        public long Count => Interlocked.Read(ref _count);

        public string Last => _last;

        public void Add(Exception ex)
        {
            Interlocked.Increment(ref _count);
            _last = $"{ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}";
        }
    }

    /// <summary>The 1-minute load average, from /proc/loadavg.</summary>
    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";
}

/// <summary>
/// A CPU cap on one process through a child cgroup: cgroup v2's <c>cpu.max</c> where the unified hierarchy has the cpu
/// controller, else cgroup v1's <c>cpu.cfs_quota_us</c> (this machine's Docker mounts v1 with a writable cpu
/// hierarchy). Disposing removes the cgroup once the process is gone or moved back.
/// </summary>
public sealed class CpuCap : IDisposable
{
    private const int PeriodMicros = 100_000;
    private readonly string _directory;
    private readonly string _parentProcs;
    private readonly int _processId;

    private CpuCap(string directory, string parentProcs, int processId)
    {
        _directory = directory;
        _parentProcs = parentProcs;
        _processId = processId;
    }

    /// <summary>Moves <paramref name="processId"/> into a new cgroup <paramref name="name"/> capped to <paramref name="percentOfOneCore"/> % of one core.</summary>
    /// <exception cref="InvalidOperationException">Neither cgroup version's cpu controller is writable here.</exception>
    public static CpuCap Apply(int processId, int percentOfOneCore, string name)
    {
        if (percentOfOneCore is < 1 or > 100)
            throw new ArgumentOutOfRangeException(nameof(percentOfOneCore), percentOfOneCore, "use 1-100 % of one core");
        var quotaMicros = PeriodMicros * percentOfOneCore / 100;
        const string unified = "/sys/fs/cgroup";
        const string v1 = "/sys/fs/cgroup/cpu";
        CpuCap cap;
        if (File.Exists(Path.Combine(unified, "cgroup.controllers"))
            && File.ReadAllText(Path.Combine(unified, "cgroup.controllers")).Split(' ', '\n').Contains("cpu"))
        {
            cap = new CpuCap(Path.Combine(unified, name), Path.Combine(unified, "cgroup.procs"), processId);
            Directory.CreateDirectory(cap._directory);
            File.WriteAllText(Path.Combine(cap._directory, "cpu.max"), $"{quotaMicros} {PeriodMicros}");
        }
        else if (File.Exists(Path.Combine(v1, "cpu.cfs_quota_us")))
        {
            cap = new CpuCap(Path.Combine(v1, name), Path.Combine(v1, "cgroup.procs"), processId);
            Directory.CreateDirectory(cap._directory);
            File.WriteAllText(Path.Combine(cap._directory, "cpu.cfs_period_us"), $"{PeriodMicros}");
            File.WriteAllText(Path.Combine(cap._directory, "cpu.cfs_quota_us"), $"{quotaMicros}");
        }
        else
        {
            throw new InvalidOperationException(
                "no writable cpu cgroup (neither /sys/fs/cgroup/cgroup.controllers with cpu nor /sys/fs/cgroup/cpu): cannot cap a host's CPU");
        }
        File.WriteAllText(Path.Combine(cap._directory, "cgroup.procs"), $"{processId}");
        return cap;
    }

    /// <summary>The cgroup's throttling counters, for the report.</summary>
    public string Describe()
    {
        var stat = Path.Combine(_directory, "cpu.stat");
        if (!File.Exists(stat)) return "no cpu.stat";
        var lines = File.ReadAllLines(stat)
            .Where(l => l.StartsWith("nr_periods", StringComparison.Ordinal) || l.StartsWith("nr_throttled", StringComparison.Ordinal));
        return $"cgroup {Path.GetFileName(_directory)}: {string.Join(", ", lines)}";
    }

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            // Back to the parent while it still runs (the bed stops it later), so the cgroup is empty and removable.
            if (File.Exists(_parentProcs)) File.WriteAllText(_parentProcs, $"{_processId}");
        }
        catch (IOException) { /* the process is gone already */ }
        try { Directory.Delete(_directory); }
        catch (IOException) { /* best effort: a leftover empty cgroup holds nothing */ }
    }
}
