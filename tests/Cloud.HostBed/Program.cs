using System.Globalization;
using Cloud.HostBed;
using Cloud.Testing;

// The multi-host bed for people: `dotnet run --project tests/Cloud.HostBed -- [--hosts N] [--page-blobs CONNSTRING]`
// (or bench/hosts.sh). Starts PostgreSQL and N hosts, prints how to reach each, and keeps them until Ctrl+C.
// With --failover-trials N it measures instead: Azurite (unless --page-blobs names an account), N kills of the
// catalog's host while the others write, kill to writes flowing again per trial, then the median and the worst.
// With --delegation it compares load-based delegation with a fixed target while one host is slowed (DelegationBench).
// With --remote-members it runs the shared fio workloads on a RAID-5 4+1 volume with a member on each of 5 hosts and on
// one with every member on the delegate's host (RemoteMembersBench).
const string Usage = "usage: Cloud.HostBed [--hosts N (1-32, default 3)] [--page-blobs CONNSTRING] [--failover-trials N (1-1000) [--seed N] [--rate W (writes/s per survivor, 1-100000; default back to back)]] [--delegation [--seconds N (1-3600)] [--warm-up N (seconds of writing before the measured window, 0-600; default 90)] [--case 20ms|100ms|cpu, repeatable] [--runs N (1-20, default 1: each case N times, a fresh pair of beds each, the modes' order alternating; the ratio is the median)]] [--remote-members [--member-mib N (1-4096, default 64)] [--runs N (1-20, default 1: each job N times per volume, interleaved; the ratio is the median)]]";
var options = new HostBedOptions();
int failoverTrials = 0, seed = 1, delegationSeconds = DelegationBench.DefaultSeconds, delegationWarmUp = DelegationBench.DefaultWarmUpSeconds;
double? failoverRate = null;
var delegation = false;
var delegationCases = new List<SlowHostCase>();
var remoteMembers = false;
var hostsGiven = false;
var memberMiB = RemoteMembersBench.DefaultMemberMiB;
var runs = 1;
var runsGiven = false;
for (var i = 0; i < args.Length; i++)
{
    var value = i + 1 < args.Length ? args[i + 1] : null;
    switch (args[i])
    {
        case "--hosts" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            && n is >= 1 and <= HostBedOptions.MaxHosts:
            options.Hosts = n;
            hostsGiven = true;
            i++;
            break;
        case "--page-blobs" when value is not null:
            options.PageBlobConnectionString = value;
            i++;
            break;
        case "--failover-trials" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            && n is >= 1 and <= FailoverTrials.MaxTrials:
            failoverTrials = n;
            i++;
            break;
        case "--rate" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            && n is >= 1 and <= 100_000:
            failoverRate = n;
            i++;
            break;
        case "--delegation":
            delegation = true;
            break;
        case "--remote-members":
            remoteMembers = true;
            break;
        case "--member-mib" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            && n is >= 1 and <= RemoteMembersBench.MaxMemberMiB:
            memberMiB = n;
            i++;
            break;
        case "--runs" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            && n is >= 1 and <= RemoteMembersBench.MaxRuns:
            runs = n;
            runsGiven = true;
            i++;
            break;
        case "--seconds" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            && n is >= 1 and <= DelegationBench.MaxSeconds:
            delegationSeconds = n;
            i++;
            break;
        case "--warm-up" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var w)
            && w is >= 0 and <= DelegationBench.MaxWarmUpSeconds:
            delegationWarmUp = w;
            i++;
            break;
        case "--case" when DelegationBench.Cases.FirstOrDefault(c => c.Key == value) is { } slowCase:
            delegationCases.Add(slowCase);
            i++;
            break;
        case "--seed" when int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var s):
            seed = s;
            i++;
            break;
        case "--help" or "-h":
            Console.WriteLine(Usage);
            return 0;
        default:
            Console.Error.WriteLine(
                $"hostbed: '{args[i]}'{(value is null ? "" : $" {value}")} is not allowed; {Usage}");
            return 2;
    }
}
if (failoverTrials > 0 && options.Hosts < 2)
{
    Console.Error.WriteLine(
        $"hostbed: --failover-trials needs at least 2 hosts (a victim and a survivor), not {options.Hosts}");
    return 2;
}
if (failoverRate is not null && failoverTrials == 0)
{
    Console.Error.WriteLine($"hostbed: --rate applies to --failover-trials; {Usage}");
    return 2;
}
if (delegation && (failoverTrials > 0 || options.Hosts < 2))
{
    Console.Error.WriteLine(
        $"hostbed: --delegation needs at least 2 hosts (a slowed one and another) and no --failover-trials; {Usage}");
    return 2;
}
if (remoteMembers && !hostsGiven) options.Hosts = RemoteMembersBench.RequiredHosts;
if (remoteMembers && (delegation || failoverTrials > 0 || options.Hosts != RemoteMembersBench.RequiredHosts))
{
    Console.Error.WriteLine(
        $"hostbed: --remote-members runs on {RemoteMembersBench.RequiredHosts} hosts (one per member of a RAID-5 4+1), not {options.Hosts}, and without --delegation or --failover-trials; {Usage}");
    return 2;
}
if (runsGiven && !remoteMembers && !delegation)
{
    Console.Error.WriteLine($"hostbed: --runs applies to --remote-members and --delegation; {Usage}");
    return 2;
}
var fioDirectory = Environment.GetEnvironmentVariable("FIO_DIR") is { Length: > 0 } fioDir
    ? fioDir
    : Path.GetFullPath(Path.Combine(Repository.Root, "..", "shared", "bench", "fio"));
var sections = (Environment.GetEnvironmentVariable("SECTIONS") is { Length: > 0 } named
    ? named.Split(' ', StringSplitOptions.RemoveEmptyEntries)
    : RemoteMembersBench.DefaultSections).ToArray();
if (remoteMembers)
{
    if (!File.Exists(Path.Combine(fioDirectory, "engine-nbd.fio")) || !File.Exists(Path.Combine(fioDirectory, "workload.fio")))
    {
        Console.Error.WriteLine($"hostbed: no fio workloads (engine-nbd.fio, workload.fio) in '{fioDirectory}'; set FIO_DIR to their directory");
        return 2;
    }
    if (sections.FirstOrDefault(s => !RemoteMembersBench.KnownSections.Contains(s)) is { } unknown)
    {
        Console.Error.WriteLine(
            $"hostbed: SECTIONS names '{unknown}', which is not allowed; use some of {string.Join(" ", RemoteMembersBench.KnownSections)}");
        return 2;
    }
}

try
{
    return await RunAsync();
}
catch (MissingPrerequisiteException ex)
{
    Console.Error.WriteLine($"Cloud.HostBed: {ex.Message}");
    return 2;
}

async Task<int> RunAsync()
{
    await using var postgres = await PostgresServer.StartAsync();
    if (remoteMembers)
    {
        return await RemoteMembersBench.RunAsync(postgres, options, fioDirectory, sections, memberMiB, runs, Console.WriteLine);
    }
    if (delegation)
    {
        return await DelegationBench.RunAsync(
            postgres, options, delegationSeconds, seed, Console.WriteLine, delegationCases.Count > 0 ? delegationCases : null,
            delegationWarmUp, runs);
    }
    if (failoverTrials > 0)
    {
        // Every host must reach every member disk, so the trials' volumes live on page blobs.
        await using var azurite = options.PageBlobConnectionString is null ? await AzuriteInstance.StartAsync() : null;
        options.PageBlobConnectionString ??= azurite!.ConnectionString();
        Console.WriteLine($"failover trials: {failoverTrials} kills of the catalog's host, seed {seed}, {options.Hosts} hosts, "
            + $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}");
        await using var trialBed = await HostBed.StartAsync(postgres, options, line => Console.WriteLine($"  {line}"));
        return await FailoverTrials.RunAsync(trialBed, failoverTrials, seed, Console.WriteLine, failoverRate);
    }

    await using var bed = await HostBed.StartAsync(postgres, options, Console.WriteLine);
    Console.WriteLine($"PostgreSQL: {bed.ConnectionString}");
    foreach (var host in bed.Hosts)
        Console.WriteLine(
            $"{host.Name}: gateway {bed.Gateway(host.Index)}  nbd://{bed.NbdEndPoint(host.Index)}  user {host.User}  data {host.DataDirectory} (pid {bed.ProcessId(host.Index)})");
    Console.WriteLine($"cloudctl --gateway {bed.Gateway(0)} --cluster-id {bed.ClusterId} status");
    Console.WriteLine("Ctrl+C stops every host and deletes the bed.");
    var stop = new TaskCompletionSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.TrySetResult(); };
    await stop.Task;
    return 0;
}
