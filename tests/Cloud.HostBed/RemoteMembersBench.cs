using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;

namespace Cloud.HostBed;

/// <summary>
/// Members across hosts against members beside the delegate (<c>bench/hosts.sh --remote-members</c>): one bed of
/// <see cref="RequiredHosts"/> hosts with disk pools, two durable RAID-5 4+1 volumes in it, one with a member in each
/// host's pool (the delegate reaches four of them through the other hosts' disk services) and one with every member a
/// file of the delegate's host; the shared fio workloads through the delegate's NBD endpoint on each, interleaved per
/// job; prints throughput, the ratio, and the silos' and fio's CPU time per I/O of both.
/// </summary>
/// <remarks>
/// <para>The delegate is the host of the volume catalog grain (it activates where it likes), because the all-local
/// volume is made the way a user makes it, <c>cloudctl volume create --disk file:PATH ...</c>, whose file members are
/// the catalog's host's. Every silo's <c>Cloud:Delegation:FixedTarget</c> is its own name, and fio connects to that
/// host's NBD endpoint only, so every delegation unit of both volumes is placed on that one silo (the first server
/// places it) and the comparison is the members' place alone. The report lists each silo's copies written, which
/// shows it.</para>
/// <para>Durable volumes: a write is acknowledged once its target wrote it to the members, so the members' place is on
/// every write's path (a volume that acknowledges after replication would measure the first server only).</para>
/// </remarks>
public static class RemoteMembersBench
{
    /// <summary>Hosts of the bed: one per member of a RAID-5 4+1.</summary>
    public const int RequiredHosts = 5;

    /// <summary>Members of each volume (RAID-5 4+1).</summary>
    public const int Members = 5;

    /// <summary>Default member size; RAID-5 4+1 gives four times this of data.</summary>
    public const int DefaultMemberMiB = 64;

    /// <summary>Most MiB per member.</summary>
    public const int MaxMemberMiB = 4096;

    /// <summary>Most runs of the jobs in one bed (<c>--runs</c>).</summary>
    public const int MaxRuns = 20;

    /// <summary>The jobs run by default: the precondition, then the four of the issue.</summary>
    public static readonly IReadOnlyList<string> DefaultSections = ["precondition", "seqwrite", "seqread", "randwrite", "randread"];

    /// <summary>The jobs of the shared workload this bench knows.</summary>
    public static readonly IReadOnlyList<string> KnownSections = ["precondition", "seqwrite", "seqread", "randwrite", "randread", "randwrite-qd1"];

    /// <summary>The issue's targets, remote members against all on the delegate's host.</summary>
    public static readonly IReadOnlyDictionary<string, double> Targets = new Dictionary<string, double>(StringComparer.Ordinal)
    {
        ["seqwrite"] = 0.6,
        ["randwrite"] = 0.4,
    };

    private const int ChunkBytes = 64 << 10;

    /// <summary>The silo's default partition size (<c>Cloud:PartitionTargetBytes</c>).</summary>
    private const long PartitionTargetBytes = 64L << 20;

    /// <summary>Bound on one fio job (the precondition of a large volume on a loaded machine included).</summary>
    private static readonly TimeSpan FioTimeout = TimeSpan.FromMinutes(20);

    /// <summary>One fio job's figures against one volume.</summary>
    private sealed record JobRun(
        double Iops,
        double BytesPerSecond,
        double LatencyMeanUs,
        double SiloCores,
        double DelegateCores,
        double FioCores,
        string LoadAverage)
    {
        /// <summary>The silos' CPU time per I/O, µs (all hosts' silos together).</summary>
        public double SiloUsPerIo => Iops > 0 ? 1e6 * SiloCores / Iops : 0;

        /// <summary>The delegate's silo's CPU time per I/O, µs.</summary>
        public double DelegateUsPerIo => Iops > 0 ? 1e6 * DelegateCores / Iops : 0;

        /// <summary>fio's CPU time per I/O, µs.</summary>
        public double FioUsPerIo => Iops > 0 ? 1e6 * FioCores / Iops : 0;
    }

    /// <summary>
    /// Starts the bed, makes both volumes and runs <paramref name="sections"/> on each; returns 0 when every targeted
    /// job reaches its target, else 1.
    /// </summary>
    public static async Task<int> RunAsync(
        PostgresServer postgres,
        HostBedOptions template,
        string fioDirectory,
        IReadOnlyList<string> sections,
        int memberMiB,
        int runs,
        Action<string> log)
    {
        ArgumentNullException.ThrowIfNull(postgres);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(sections);
        ArgumentNullException.ThrowIfNull(log);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        var job = Path.Combine(Path.GetTempPath(), $"remote-members-{Environment.ProcessId}.fio");
        File.WriteAllText(job, JobFile(fioDirectory));
        try
        {
            // The silo's own partition size, not the bed's 1 MiB (which spreads a small volume's lock grains for tests).
            var options = new HostBedOptions
            {
                Hosts = template.Hosts,
                ClusterId = "remote",
                DiskPools = true,
                PartitionTargetBytes = PartitionTargetBytes,
            };
            foreach (var (key, value) in template.Environment) options.Environment[key] = value;
            for (var i = 0; i < options.Hosts; i++)
                options.HostEnvironment[$"h{i + 1}"] = new(StringComparer.Ordinal)
                {
                    ["Cloud__Delegation__FixedTarget"] = $"h{i + 1}",
                };
            log($"remote members bench: {options.Hosts} hosts with disk pools, two durable RAID-5 4+1 volumes of {memberMiB} MiB "
                + $"members, chunk {ChunkBytes >> 10} KiB, partitions of {PartitionTargetBytes >> 20} MiB; fio jobs {string.Join(", ", sections)} from {fioDirectory}"
                + (runs > 1 ? $", {runs} runs (the precondition once)" : "")
                + $"{Overrides()}; {Environment.ProcessorCount} cores; load average {LoadAverage()}");
            await using var bed = await HostBed.StartAsync(postgres, options, line => log($"  {line}")).ConfigureAwait(false);
            await using var admin = await ConnectAsync(bed, log).ConfigureAwait(false);
            await Eventually.TrueAsync(
                async () => (await admin.GetClusterStatusAsync().ConfigureAwait(false)).Silos
                    .Count(e => e.PoolCapacityBytes > 0) == bed.Hosts.Count,
                "every host publishes its disk pool").ConfigureAwait(false);
            var delegateIndex = await bed.CatalogHostAsync(admin).ConfigureAwait(false);
            var delegateHost = bed.Hosts[delegateIndex];
            var memberBytes = (long)memberMiB << 20;
            var sizeBytes = (Members - 1) * memberBytes;
            var remote = await admin.CreateVolumeAsync(
                new VolumeSpec("remote", sizeBytes, VolumeLevel.Raid5, Members, ChunkBytes, Durable: true))
                .ConfigureAwait(false);
            // What `cloudctl volume create local --disk file:PATH ...` sends: file members on the catalog's host.
            var localDisks = Enumerable.Range(0, Members)
                .Select(i => $"file:{Path.Combine(delegateHost.PoolDirectory, $"local-disk{i}.img")}").ToArray();
            var local = await admin.CreateVolumeAsync(
                new VolumeSpec("local", sizeBytes, VolumeLevel.Raid5, Members, ChunkBytes, Durable: true) { Disks = [.. localDisks] })
                .ConfigureAwait(false);
            log($"delegate: {delegateHost.Name} (the catalog's host; every silo's FixedTarget is itself, fio connects to "
                + $"nbd://{bed.NbdEndPoint(delegateIndex)} only)");
            var remoteLog = (await admin.ShowVolumeAsync(remote.Name).ConfigureAwait(false)).PartialParityLog;
            log($"remote: members on {string.Join(", ", remote.MemberHosts)}{(remoteLog ? ", partial parity log" : ", no partial parity log (Cloud__PartialParityLog=false)")}");
            log($"local:  members on {string.Join(", ", local.MemberHosts)} "
                + $"(cloudctl volume create local --size {sizeBytes >> 20}MiB --level raid5 --chunk 64KiB --durable {string.Join(" ", localDisks.Select(d => "--disk " + d))})");
            if (local.MemberHosts.Any(h => h != delegateHost.Name) || remote.MemberHosts.Distinct().Count() != Members)
                throw new InvalidOperationException("the volumes' members are not where this bench needs them");

            var clockTicks = ClockTicksPerSecond();
            var results = new Dictionary<(string Volume, string Section), List<JobRun>>();
            for (var r = 0; r < runs; r++)
            {
                if (runs > 1) log($"run {r + 1} of {runs}");
                for (var s = 0; s < sections.Count; s++)
                {
                    var section = sections[s];
                    // The precondition fills the volumes once; the later runs measure on what it left.
                    if (r > 0 && section == "precondition") continue;
                    // Alternate which volume goes first from job to job and, for each job, from run to run, so that
                    // drifting load on a shared machine (and whatever the job before leaves behind) falls on both alike.
                    foreach (var volume in (s + r) % 2 == 0 ? new[] { "remote", "local" } : ["local", "remote"])
                    {
                        var uri = $"nbd://{bed.NbdEndPoint(delegateIndex)}/{volume}";
                        var run = await RunFioAsync(bed, delegateIndex, job, section, uri, clockTicks).ConfigureAwait(false);
                        if (!results.TryGetValue((volume, section), out var list)) results[(volume, section)] = list = [];
                        list.Add(run);
                        log($"  {section,-13} {volume,-6}: {Describe(section, run)}, load average {run.LoadAverage}");
                    }
                }
            }

            var status = await admin.GetClusterStatusAsync().ConfigureAwait(false);
            log("copies written per silo (the delegate's alone should grow): "
                + string.Join(", ", status.Silos.OrderBy(e => e.SiloName, StringComparer.Ordinal).Select(e => $"{e.SiloName} {e.WritesPerformed}")));
            return Report(results, sections, log);
        }
        finally
        {
            File.Delete(job);
        }
    }

    /// <summary>Most attempts to connect to the first host's gateway: on a machine at load average 50 and more, a
    /// freshly started silo sometimes does not answer the first client within its 15 s.</summary>
    private const int MaxConnectAttempts = 3;

    private static async Task<CloudClient> ConnectAsync(HostBed bed, Action<string> log)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await bed.ConnectToAsync(0).ConfigureAwait(false);
            }
            catch (CloudRequestException ex) when (attempt < MaxConnectAttempts)
            {
                log($"  connecting to {bed.Gateway(0)} failed ({ex.Message}); trying again");
            }
        }
    }

    private static int Report(
        Dictionary<(string Volume, string Section), List<JobRun>> results, IReadOnlyList<string> sections, Action<string> log)
    {
        log("");
        var runs = results.Values.Max(list => list.Count);
        if (runs > 1)
            log($"medians of {runs} runs: the ratio is the median of the runs' ratios (each run's remote job against the local "
                + "job beside it), the other columns the medians of their own figures");
        log($"{"job",-13} {"metric",-6} {"remote",10} {"local",10} {"ratio",6} {"target",6}  "
            + $"{"silos us/IO r/l",17} {"delegate us/IO r/l",19} {"fio us/IO r/l",15}  load average r/l");
        var below = new List<string>();
        var perRun = new List<string>();
        foreach (var section in sections)
        {
            if (section == "precondition") continue;
            var r = results[("remote", section)];
            var l = results[("local", section)];
            var small = section.StartsWith("rand", StringComparison.Ordinal);
            Func<JobRun, double> figure = small ? run => run.Iops : run => run.BytesPerSecond / (1 << 20);
            var ratios = r.Zip(l, (a, b) => figure(b) > 0 ? figure(a) / figure(b) : double.NaN).ToList();
            var ratio = Stats.Median(ratios);
            var target = Targets.TryGetValue(section, out var t) ? t : (double?)null;
            if (target is { } need && !(ratio >= need)) below.Add($"{section} {ratio:0.00}x < {need:0.00}x");
            log($"{section,-13} {(small ? "IOPS" : "MiB/s"),-6} {Median(r, figure),10:0.0} {Median(l, figure),10:0.0} {ratio,6:0.00} "
                + $"{(target is { } x ? x.ToString("0.00", CultureInfo.InvariantCulture) : "-"),6}  "
                + $"{Median(r, e => e.SiloUsPerIo),8:0} {Median(l, e => e.SiloUsPerIo),8:0} "
                + $"{Median(r, e => e.DelegateUsPerIo),9:0} {Median(l, e => e.DelegateUsPerIo),9:0} "
                + $"{Median(r, e => e.FioUsPerIo),7:0} {Median(l, e => e.FioUsPerIo),7:0}  {r[^1].LoadAverage} / {l[^1].LoadAverage}");
            if (ratios.Count > 1)
                perRun.Add($"{section,-13} ratios {string.Join(" ", ratios.Select(x => x.ToString("0.00", CultureInfo.InvariantCulture)))}");
        }
        foreach (var line in perRun) log(line);
        log("silos us/IO: CPU time of all five silo processes (user + system, /proc/PID/stat) over the fio run, per I/O; "
            + "delegate: its silo alone; r/l = remote/local");
        log(below.Count == 0 ? "every targeted job reached its target" : $"below target: {string.Join(", ", below)}");
        return below.Count == 0 ? 0 : 1;
    }

    private static double Median(IEnumerable<JobRun> runs, Func<JobRun, double> figure) => Stats.Median(runs.Select(figure));

    private static string Describe(string section, JobRun run) =>
        $"{run.Iops:0} IOPS, {run.BytesPerSecond / (1 << 20):0.0} MiB/s, mean latency {run.LatencyMeanUs:0} us, "
        + $"silos {run.SiloCores:0.00} cores (delegate {run.DelegateCores:0.00}), fio {run.FioCores:0.00}";

    /// <summary>Runs one section of the job file against <paramref name="uri"/>, measuring the silos' CPU over it.</summary>
    private static async Task<JobRun> RunFioAsync(HostBed bed, int delegateIndex, string job, string section, string uri, double clockTicks)
    {
        var pids = Enumerable.Range(0, bed.Hosts.Count).Select(bed.ProcessId).ToArray();
        var before = pids.Select(CpuTicks).ToArray();
        var clock = Stopwatch.StartNew();
        var start = new ProcessStartInfo("fio") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add($"--section={section}");
        start.ArgumentList.Add("--output-format=json");
        start.ArgumentList.Add(job);
        start.Environment["NBD_URI"] = uri;
        using var fio = Process.Start(start) ?? throw new InvalidOperationException("cannot start fio");
        var stdout = fio.StandardOutput.ReadToEndAsync();
        var stderr = fio.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(FioTimeout))
        {
            try
            {
                await fio.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                fio.Kill();
                throw new TimeoutException($"fio {section} on {uri} did not finish within {FioTimeout}");
            }
        }
        var wallSeconds = clock.Elapsed.TotalSeconds;
        var after = pids.Select(CpuTicks).ToArray();
        var output = await stdout.ConfigureAwait(false);
        if (fio.ExitCode != 0)
            throw new InvalidOperationException($"fio {section} on {uri} failed (exit {fio.ExitCode}): {await stderr.ConfigureAwait(false)}{output}");
        // fio's nbd engine prints "fio: connected to NBD server" before the JSON.
        var json = output[output.IndexOf('{', StringComparison.Ordinal)..];
        using var document = JsonDocument.Parse(json);
        var jobElement = document.RootElement.GetProperty("jobs")[0];
        var write = jobElement.GetProperty("write");
        var side = write.GetProperty("io_bytes").GetInt64() > 0 ? write : jobElement.GetProperty("read");
        var latency = side.TryGetProperty("lat_ns", out var lat) ? lat : side.GetProperty("clat_ns");
        var siloCores = Enumerable.Range(0, pids.Length).Sum(i => after[i] - before[i]) / clockTicks / wallSeconds;
        var delegateCores = (after[delegateIndex] - before[delegateIndex]) / clockTicks / wallSeconds;
        var fioCores = (jobElement.GetProperty("usr_cpu").GetDouble() + jobElement.GetProperty("sys_cpu").GetDouble()) / 100;
        return new JobRun(
            side.GetProperty("iops").GetDouble(),
            side.GetProperty("bw_bytes").GetDouble(),
            latency.GetProperty("mean").GetDouble() / 1000,
            siloCores,
            delegateCores,
            fioCores,
            LoadAverage());
    }

    /// <summary>The engine part and the shared workload, with <c>FIO_RUNTIME</c> / <c>FIO_RAMP</c> applied as bench/nbd.sh does.</summary>
    private static string JobFile(string fioDirectory)
    {
        var text = File.ReadAllText(Path.Combine(fioDirectory, "engine-nbd.fio")) + File.ReadAllText(Path.Combine(fioDirectory, "workload.fio"));
        var lines = text.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i] == "runtime=20" && Environment.GetEnvironmentVariable("FIO_RUNTIME") is { Length: > 0 } runtime)
                lines[i] = $"runtime={runtime}";
            if (lines[i] == "ramp_time=2" && Environment.GetEnvironmentVariable("FIO_RAMP") is { Length: > 0 } ramp)
                lines[i] = $"ramp_time={ramp}";
        }
        return string.Join('\n', lines);
    }

    private static string Overrides() =>
        (Environment.GetEnvironmentVariable("FIO_RUNTIME") is { Length: > 0 } r ? $", runtime {r} s" : "")
        + (Environment.GetEnvironmentVariable("FIO_RAMP") is { Length: > 0 } p ? $", ramp {p} s" : "");

    /// <summary>User + system CPU of a process so far, in clock ticks (fields 14 and 15 of /proc/PID/stat).</summary>
    private static long CpuTicks(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
    }

    private static double ClockTicksPerSecond()
    {
        using var getconf = Process.Start(new ProcessStartInfo("getconf", "CLK_TCK") { RedirectStandardOutput = true })
            ?? throw new InvalidOperationException("cannot start getconf");
        var text = getconf.StandardOutput.ReadToEnd();
        getconf.WaitForExit();
        return double.Parse(text.Trim(), CultureInfo.InvariantCulture);
    }

    private static string LoadAverage() => DelegationBench.LoadAverage();
}
