using System.Globalization;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.TestingHost;

// Load-based delegation against delegation to one fixed silo, on a 3-silo in-process cluster where one silo's
// disks are slowed by injected latency. Writes go through the SDK to a durable volume (acknowledged once on disk),
// so the target's disks are on the client's path. Usage:
//   dotnet run -c Release --project bench/Cloud.Bench.Cluster -- [--seconds N] [--latency-ms N] [--seed N]
var seconds = Arg("--seconds", 5);
var latencyMs = Arg("--latency-ms", 100);
var seed = Arg("--seed", 12345);
const int randomWriters = 32;
const int sequentialWriters = 4;
const long volumeBytes = 512L << 20;

var data = Path.Combine(Path.GetTempPath(), "cloud-bench-cluster-" + Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(data);
var builder = new InProcessTestClusterBuilder(3);
builder.ConfigureSilo((_, silo) =>
{
    silo.AddCloud(o =>
    {
        o.DataDirectory = data;
        o.LoadPublishPeriod = TimeSpan.FromMilliseconds(100);
        o.PartitionTargetBytes = 16L << 20;
    });
    silo.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
});
var cluster = builder.Build();
try
{
    await cluster.DeployAsync();
    var cloud = new CloudClient(cluster.Client);
    var slow = cluster.Silos[1];
    slow.ServiceProvider.GetRequiredService<SiloRuntimeSettings>()
        .InjectedDiskLatency = TimeSpan.FromMilliseconds(latencyMs);
    Console.WriteLine(
        $"3 silos, {slow.Name} slowed by {latencyMs} ms per disk operation; {seconds} s per run; seed {seed}");

    var results = new List<(string Workload, string Mode, double Value, string Unit)>();
    foreach (var (mode, fixedTarget) in new[] { ("load-based", (string?)null), ($"fixed ({slow.Name})", slow.Name) })
    {
        foreach (var s in cluster.Silos)
            s.ServiceProvider.GetRequiredService<SiloRuntimeSettings>().FixedDelegationTarget = fixedTarget;
        var name = "bench-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.CreateVolumeAsync(new VolumeSpec(name, volumeBytes, VolumeLevel.Raid5, 3, 64 << 10, Durable: true));
        var volume = await cloud.OpenVolumeAsync(name);

        var ops = await RunAsync(randomWriters, async (writer, random, stop) =>
        {
            var block = new byte[4096];
            random.NextBytes(block);
            long count = 0;
            while (!stop.IsCancellationRequested)
            {
                await volume.WriteAsync(random.NextInt64(volumeBytes / 4096) * 4096, block);
                count++;
            }
            return count;
        });
        results.Add(("random 4 KiB writes", mode, ops / (double)seconds, "IOPS"));

        var chunks = await RunAsync(sequentialWriters, async (writer, random, stop) =>
        {
            var chunk = new byte[1 << 20];
            random.NextBytes(chunk);
            var region = volumeBytes / sequentialWriters;
            long count = 0, offset = writer * region;
            while (!stop.IsCancellationRequested)
            {
                await volume.WriteAsync(offset, chunk);
                offset += chunk.Length;
                if (offset + chunk.Length > (writer + 1) * region) offset = writer * region;
                count++;
            }
            return count;
        });
        results.Add(("sequential 1 MiB writes", mode, chunks / (double)seconds, "MiB/s"));
        await cloud.DeleteVolumeAsync(name);
    }

    Console.WriteLine();
    Console.WriteLine($"{"workload",-26} {"mode",-20} {"throughput",14}");
    foreach (var r in results) Console.WriteLine($"{r.Workload,-26} {r.Mode,-20} {r.Value,10:0.0} {r.Unit}");
    foreach (var workload in results.Select(r => r.Workload).Distinct())
    {
        var byMode = results.Where(r => r.Workload == workload).ToList();
        Console.WriteLine($"{workload}: load-based / fixed = {byMode[0].Value / byMode[1].Value:0.00}x");
    }
}
finally
{
    await cluster.StopAllSilosAsync();
    await cluster.DisposeAsync();
    Directory.Delete(data, recursive: true);
}

async Task<long> RunAsync(int writers, Func<int, Random, CancellationToken, Task<long>> work)
{
    using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
    var tasks = Enumerable.Range(
        0, writers).Select(w => Task.Run(() => work(w, new Random(seed + w), stop.Token))).ToArray();
    return (await Task.WhenAll(tasks)).Sum();
}

int Arg(string name, int fallback)
{
    var i = Array.IndexOf(args, name);
    if (i < 0) return fallback;
    if (i + 1 < args.Length && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out var value) && value > 0)
        return value;
    Console.Error.WriteLine($"{name} needs a positive whole number");
    Environment.Exit(2);
    return fallback;
}
