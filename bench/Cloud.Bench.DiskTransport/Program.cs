using System.Diagnostics;
using System.Globalization;
using Cloud.Bench.DiskTransport;
using Cloud.Grains.Disks;
using Cloud.Grains.Hosting;
using Cloud.Storage.Devices;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.TestingHost;

// The disk service's transport, measured (issue 15, item 1): 4 KiB and 64 KiB reads and writes of one member file
// served by another silo, (a) by grain calls to its IHostDiskGrain with immutable payloads, against (b) one TCP
// connection per host pair with a small framed protocol. Both over loopback between two in-process silos, both on
// the same file (so in the page cache: the figures are the transports' cost, not a disk's). Usage:
//   dotnet run -c Release --project bench/Cloud.Bench.DiskTransport -- [--ops N] [--sizes KIB,KIB,...]
// --sizes 256,1024 measures the sizes of a sequential 1 MiB job's member requests instead (default 4,64). Each row
// also gives the process's CPU time per operation and its gen2 collections (both silos and both transports' ends are in
// this process).
var ops = 4000;
int[] sizesKiB = [4, 64];
for (var a = 0; a + 1 < args.Length; a += 2)
{
    if (args[a] == "--ops" && int.TryParse(args[a + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 1_000_000)
        ops = n;
    else if (args[a] == "--sizes" && args[a + 1].Split(',').All(t => int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var k) && k is >= 4 and <= 16384 && k % 4 == 0))
        sizesKiB = [.. args[a + 1].Split(',').Select(t => int.Parse(t, CultureInfo.InvariantCulture))];
    else
    {
        Console.Error.WriteLine($"'{args[a]} {args[a + 1]}' is not allowed; use --ops N (1-1000000) and --sizes KIB,... (multiples of 4, 4-16384)");
        return 2;
    }
}
const long fileBytes = 256L << 20;

var root = Path.Combine(Path.GetTempPath(), "cloud-bench-disk-" + Guid.NewGuid().ToString("N"));
var pool = Path.Combine(root, "pool");
Directory.CreateDirectory(pool);
var builder = new InProcessTestClusterBuilder(2);
builder.ConfigureSilo((_, silo) =>
{
    silo.AddCloud(o =>
    {
        o.DataDirectory = Path.Combine(root, "data");
        o.DiskPools = [pool];
    });
    silo.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
});
var cluster = builder.Build();
try
{
    await cluster.DeployAsync();
    var caller = cluster.Silos[0].ServiceProvider.GetRequiredService<IGrainFactory>();
    var path = Path.Combine(pool, "member.img");
    var writer = cluster.Silos[0].SiloAddress.ToParsableString();
    await using var viaGrains = await HostDisks.OpenThroughAsync(caller, cluster.Silos[1].Name, path, fileBytes, writer)
        ?? throw new InvalidOperationException($"{path} was not created");
    await using var file = new FileBlockDevice(path);
    // Write every block once first: the first write into a preallocated (unwritten) extent costs the file system a
    // conversion, which would be charged to whichever transport happens to run first.
    var fill = new byte[4 << 20];
    for (long at = 0; at < fileBytes; at += fill.Length) await file.WriteAsync(at, fill);
    await file.FlushAsync();
    await using var tcpServer = new TcpDiskServer(file);
    await using var viaTcp = new RemoteBlockDevice(
        "tcp", viaGrains.CapacityBytes, viaGrains.SectorSizeBytes, viaGrains.MaxInFlightIo,
        new TcpDiskChannel(tcpServer.EndPoint));

    Console.WriteLine($"{ops} operations per row, 2 in-process silos over loopback, {Environment.ProcessorCount} cores");
    Console.WriteLine("size      op     QD  grains ops/s  tcp ops/s  tcp/grains  grains p50 us  tcp p50 us  grains CPU us/op  tcp CPU us/op  grains gen2 GCs  tcp gen2 GCs");
    foreach (var size in sizesKiB.Select(k => k << 10))
    foreach (var write in new[] { true, false })
    foreach (var depth in new[] { 1, 16 })
    {
        var a = await RunAsync(viaGrains, size, write, depth, ops);
        var b = await RunAsync(viaTcp, size, write, depth, ops);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{size / 1024,5} KiB  {(write ? "write" : "read "),-5}  {depth,2}  {a.OpsPerSecond,12:0}  {b.OpsPerSecond,9:0}  {b.OpsPerSecond / a.OpsPerSecond,10:0.00}  {a.P50Us,13:0}  {b.P50Us,10:0}  {a.CpuUsPerOp,16:0}  {b.CpuUsPerOp,13:0}  {a.Gen2Collections,15}  {b.Gen2Collections,12}"));
    }
}
finally
{
    await cluster.StopAllSilosAsync();
    await cluster.DisposeAsync();
    Directory.Delete(root, recursive: true);
}
return 0;

static async Task<(double OpsPerSecond, double P50Us, double CpuUsPerOp, int Gen2Collections)> RunAsync(IBlockDevice device, int size, bool write, int depth, int ops)
{
    var slots = device.CapacityBytes / size;
    var latencies = new double[ops];
    var next = -1;
    // Warm-up, then the measured run: each of `depth` loops issues one request at a time.
    for (var i = 0; i < 200; i++) await Io(device, size, write, i % slots, new byte[size]);
    var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
    var gen2Before = GC.CollectionCount(2);
    var total = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, depth).Select(async _ =>
    {
        var buffer = new byte[size];
        Random.Shared.NextBytes(buffer);
        int i;
        while ((i = Interlocked.Increment(ref next)) < ops)
        {
            var start = Stopwatch.GetTimestamp();
            await Io(device, size, write, (i * 7919L) % slots, buffer);
            latencies[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }
    }));
    var seconds = total.Elapsed.TotalSeconds;
    var cpuUs = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMicroseconds;
    Array.Sort(latencies);
    return (ops / seconds, latencies[ops / 2], cpuUs / ops, GC.CollectionCount(2) - gen2Before);
}

static ValueTask Io(IBlockDevice device, int size, bool write, long slot, byte[] buffer) =>
    write ? device.WriteAsync(slot * size, buffer) : device.ReadAsync(slot * size, buffer);

