using System.Diagnostics;
using System.Globalization;
using Azure;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;
using Cloud.Storage.Azure;
using Cloud.Testing;

namespace Cloud.Bench.Azure;

/// <summary>
/// The device against the raw SDK calls, interleaved in one process against one Azurite: each round runs a batch of
/// raw calls and a batch of device calls (in alternating order, so neither side always goes first) over the same
/// blob, and the figure is the median over rounds of device time / raw time. Drift of the server or the machine
/// during the run then shows up on both sides of each ratio instead of in the ratio.
/// </summary>
internal static class PairedRun
{
    private const long BlobBytes = 64L * 1024 * 1024;

    public static async Task<int> RunAsync(string[] args)
    {
        var rounds = 30;
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--rounds"
                && i + 1 < args.Length
                && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out var r)
                && r is >= 3 and <= 10_000)
            {
                rounds = r;
                i++;
            }
            else if (args[i] == "--rounds")
            {
                await Console.Error.WriteLineAsync(
                    $"paired: --rounds needs a whole number from 3 to 10000, got '{(i + 1 < args.Length ? args[i + 1] : "")}'");
                return 2;
            }
            else
            {
                await Console.Error.WriteLineAsync(
                    $"paired: unknown argument '{args[i]}'; allowed: --rounds N (3-10000, default 30)");
                return 2;
            }
        }

        await using var azurite = await AzuriteInstance.StartAsync();
        var connection = PageBlobConnection.FromConnectionString(azurite.ConnectionString());
        Console.WriteLine(
            $"Azurite on 127.0.0.1:{azurite.Port}; {rounds} rounds per case; ratio = device / raw time, median over rounds (target <= 1.10)");
        Console.WriteLine($"{"case",-14} {"raw/op",12} {"device/op",12} {"ratio",8} {"p25-p75",14}");
        foreach (var size in new[] { 4096, 1024 * 1024 })
        {
            var blob = $"paired-{size}";
            await using var device = await connection.OpenDeviceAsync("bench", blob, BlobBytes);
            PageBlobClient raw = connection.GetPageBlobClient("bench", blob);
            for (long offset = 0; offset < BlobBytes; offset += 4 * 1024 * 1024)
            {
                await device.WriteAsync(offset, new byte[4 * 1024 * 1024]);
            }

            var buffer = new byte[size];
            new Random(size).NextBytes(buffer);
            // About 16 MiB per batch and side for 1 MiB I/O, 256 calls for 4 KiB.
            var batch = size >= 1024 * 1024 ? 16 : 256;
            long cursor = 0;
            long Next()
            {
                var o = cursor;
                cursor = (cursor + size) % BlobBytes;
                return o;
            }

            var cases = new (string Name, Func<Task> Raw, Func<Task> Device)[]
            {
                ($"write {Label(size)}",
                    async () =>
                    {
                        using var content = new MemoryStream(buffer, writable: false);
                        await raw.UploadPagesAsync(content, Next());
                    },
                    async () => await device.WriteAsync(Next(), buffer)),
                ($"read {Label(size)}",
                    async () =>
                    {
                        var range = new BlobDownloadOptions { Range = new HttpRange(Next(), size) };
                        using BlobDownloadStreamingResult result = (await raw.DownloadStreamingAsync(range)).Value;
                        await result.Content.ReadExactlyAsync(buffer);
                    },
                    async () => await device.ReadAsync(Next(), buffer)),
            };
            foreach (var c in cases)
            {
                // Warm both paths (connections, JIT) before measuring.
                await TimeBatchAsync(c.Raw, batch);
                await TimeBatchAsync(c.Device, batch);
                var rawTimes = new List<double>();
                var deviceTimes = new List<double>();
                var ratios = new List<double>();
                for (var round = 0; round < rounds; round++)
                {
                    double rawSeconds, deviceSeconds;
                    if (round % 2 == 0)
                    {
                        rawSeconds = await TimeBatchAsync(c.Raw, batch);
                        deviceSeconds = await TimeBatchAsync(c.Device, batch);
                    }
                    else
                    {
                        deviceSeconds = await TimeBatchAsync(c.Device, batch);
                        rawSeconds = await TimeBatchAsync(c.Raw, batch);
                    }
                    rawTimes.Add(rawSeconds / batch);
                    deviceTimes.Add(deviceSeconds / batch);
                    ratios.Add(deviceSeconds / rawSeconds);
                }
                ratios.Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{c.Name,-14} {Micros(Median(rawTimes)),12} {Micros(Median(deviceTimes)),12} {Median(ratios),8:F2} {Quantile(ratios, 0.25),6:F2}-{Quantile(ratios, 0.75),-6:F2}"));
            }
        }
        return 0;
    }

    private static async Task<double> TimeBatchAsync(Func<Task> op, int count)
    {
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; i < count; i++)
        {
            await op();
        }
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static string Label(int size) => size >= 1024 * 1024 ? $"{size >> 20} MiB" : $"{size >> 10} KiB";

    private static string Micros(double seconds)
        => string.Create(CultureInfo.InvariantCulture, $"{seconds * 1e6:F0} us");

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return Quantile(sorted, 0.5);
    }

    /// <summary>Linear interpolation between the closest ranks of a sorted list.</summary>
    private static double Quantile(List<double> sorted, double q)
    {
        var position = q * (sorted.Count - 1);
        var lower = (int)Math.Floor(position);
        var upper = Math.Min(lower + 1, sorted.Count - 1);
        return sorted[lower] + ((sorted[upper] - sorted[lower]) * (position - lower));
    }
}
