using System.Diagnostics;
using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.Bench.Volumes;

/// <summary>
/// The engine's CPU per MiB without NBD, Orleans or a network: sequential 1 MiB writes and reads, several in flight,
/// of a RAID-5 4+1 volume of 64 KiB chunks on file members, against the same requests on one plain file (what
/// <c>nbdkit file</c> does per request), in alternating rounds so that both see the same machine. The figure is the
/// process's CPU time (every thread, user and system: the page-cache copies are system time) divided by the MiB moved,
/// the measure <c>bench/nbd.sh</c> reports per I/O for the whole host. By default each request in flight reuses one
/// buffer, which stays in the CPU's caches; with more distinct buffers than that (96: 96 MiB) each request's bytes come
/// from memory, as an NBD server's freshly received payloads do. Run with
/// <c>dotnet run -c Release --project bench/Cloud.Bench -- cpu [rounds] [seconds] [in-flight] [buffers]</c>.
/// </summary>
public static class PairedCpuRun
{
    private const int ChunkBytes = 64 * 1024;
    private const int RequestBytes = 1 << 20;
    private const long Stripes = 1024;

    /// <summary>
    /// Parses <c>[rounds 1..100] [seconds 0.5..60] [in-flight 1..64] [buffers in-flight..256]</c>; null with a one-line
    /// message naming the bad argument and what is allowed.
    /// </summary>
    public static (int Rounds, double Seconds, int InFlight, int Buffers)? Parse(string[] args, out string? error)
    {
        error = null;
        int rounds = 6, inFlight = 8, buffers = 0;
        double seconds = 3;
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        if (args.Length > 4)
            error = $"cpu takes at most 4 arguments (rounds, seconds, in-flight, buffers), not {args.Length}";
        else if (args.Length > 0 && (!int.TryParse(args[0], invariant, out rounds) || rounds is < 1 or > 100))
            error = $"cpu: rounds '{args[0]}' is not allowed: a whole number 1..100 (default 6)";
        else if (args.Length > 1 && (!double.TryParse(args[1], invariant, out seconds) || seconds is < 0.5 or > 60))
            error = $"cpu: seconds per job '{args[1]}' is not allowed: 0.5..60 (default 3)";
        else if (args.Length > 2 && (!int.TryParse(args[2], invariant, out inFlight) || inFlight is < 1 or > 64))
            error = $"cpu: requests in flight '{args[2]}' is not allowed: a whole number 1..64 (default 8)";
        else if (args.Length > 3 && (!int.TryParse(args[3], invariant, out buffers) || buffers < inFlight || buffers > 256))
            error = $"cpu: buffers '{args[3]}' is not allowed: a whole number {inFlight}..256, at least the requests in flight (default: as many as in flight)";
        return error is null ? (rounds, seconds, inFlight, Math.Max(buffers, inFlight)) : null;
    }

    public static async Task RunAsync(TextWriter output, int rounds, double seconds, int inFlight, int bufferCount)
    {
        var dir = Directory.CreateTempSubdirectory("cloud-cpu-run-").FullName;
        var owners = new List<IAsyncDisposable>();
        try
        {
            var memberBytes = (1 << 20) + Stripes * (ChunkBytes + 4096);
            var members = Enumerable.Range(0, 5)
                .Select(i => (IBlockDevice)new FileBlockDevice(Path.Combine(dir, $"m{i}"), memberBytes))
                .ToArray();
            RaidVolume volume = await RaidVolume.CreateAsync(
                new VolumeDefinition("cpu", Guid.NewGuid(), new VolumeGeometry(RaidLevel.Raid5, 5, ChunkBytes)),
                members);
            owners.Add(volume);
            var plain = new FileBlockDevice(Path.Combine(dir, "plain"), volume.CapacityBytes);
            owners.Add(plain);
            (string Name, Func<long, ReadOnlyMemory<byte>, ValueTask> Write, Func<long, Memory<byte>, ValueTask> Read)[]
                targets =
                [
                    ("plain file", (o, s) => plain.WriteAsync(o, s), (o, d) => plain.ReadAsync(o, d)),
                    ("RAID-5 4+1", (o, s) => volume.WriteAsync(o, s), (o, d) => volume.ReadAsync(o, d)),
                ];
            var bytes = volume.CapacityBytes;
            output.WriteLine(
                $"{bytes >> 20} MiB on files in {dir}: 1 MiB requests, {inFlight} in flight from {bufferCount} buffers; {rounds} rounds of {seconds} s per job, the order turning each round.");
            var buffers = Enumerable.Range(0, bufferCount).Select(i =>
            {
                var b = new byte[RequestBytes];
                new Random(i).NextBytes(b);
                return b;
            }).ToArray();
            // Filled once (the NBD bench's precondition job), so that the jobs rewrite and reread cached pages.
            foreach (var t in targets)
                await RunJobAsync(t.Write, null, bytes, buffers, inFlight, TimeSpan.Zero, fill: true);

            var results = targets.Select(_ => (Write: new List<double>(), Read: new List<double>())).ToArray();
            for (var round = 0; round < rounds; round++)
            {
                for (var k = 0; k < targets.Length; k++)
                {
                    var i = (k + round) % targets.Length;
                    var time = TimeSpan.FromSeconds(seconds);
                    var w = await RunJobAsync(targets[i].Write, null, bytes, buffers, inFlight, time, fill: false);
                    var r = await RunJobAsync(null, targets[i].Read, bytes, buffers, inFlight, time, fill: false);
                    results[i].Write.Add(w);
                    results[i].Read.Add(r);
                    output.WriteLine($"round {round + 1} {targets[i].Name,-10} write {w,6:F1}  read {r,6:F1} us CPU per MiB");
                }
            }
            output.WriteLine($"{"median",-10} {"write us/MiB",13} {"vs plain",9} {"read us/MiB",12} {"vs plain",9}");
            for (var i = 0; i < targets.Length; i++)
            {
                double w = Median(results[i].Write), r = Median(results[i].Read);
                output.WriteLine(
                    $"{targets[i].Name,-10} {w,13:F1} {w / Median(results[0].Write),8:F2}x {r,12:F1} {r / Median(results[0].Read),8:F2}x");
            }
        }
        finally
        {
            foreach (var o in owners) await o.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Sequential 1 MiB requests, <paramref name="inFlight"/> at a time, request n from buffer n mod the buffers, for
    /// <paramref name="duration"/> (or one pass over the target when <paramref name="fill"/>); returns the process's CPU
    /// microseconds per MiB moved.
    /// </summary>
    private static async Task<double> RunJobAsync(
        Func<long, ReadOnlyMemory<byte>, ValueTask>? write,
        Func<long, Memory<byte>, ValueTask>? read,
        long bytes,
        byte[][] buffers,
        int inFlight,
        TimeSpan duration,
        bool fill)
    {
        var requests = bytes / RequestBytes;
        long next = -1, done = 0;
        var clock = Stopwatch.StartNew();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var workers = Enumerable.Range(0, inFlight).Select(_ => Task.Run(async () =>
        {
            while (true)
            {
                var n = Interlocked.Increment(ref next);
                if (fill ? n >= requests : clock.Elapsed >= duration) return;
                var offset = n % requests * RequestBytes;
                var buffer = buffers[n % buffers.Length];
                if (write is not null) await write(offset, buffer);
                else await read!(offset, buffer);
                Interlocked.Increment(ref done);
            }
        })).ToArray();
        await Task.WhenAll(workers);
        var used = Process.GetCurrentProcess().TotalProcessorTime - cpu;
        return used.TotalMicroseconds / Math.Max(1, done);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1
            ? sorted[sorted.Length / 2]
            : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
