using Azure;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Cloud.Storage.Azure;
using Cloud.Testing;

namespace Cloud.Bench.Azure;

/// <summary>
/// Page-blob I/O through <see cref="PageBlobBlockDevice"/> against the raw SDK calls it wraps
/// (<c>UploadPagesAsync</c>, <c>DownloadStreamingAsync</c>) on the same Azurite, the same blob and
/// the same client options. The ratio column is the device's overhead; the target is at most 1.10.
/// </summary>
/// <remarks>
/// BenchmarkDotNet runs each case in its own process, one after another. Each process starts its own Azurite
/// (empty, in a new temp directory) in <see cref="Setup"/> and stops it in <see cref="Cleanup"/>, so the raw calls
/// and the device meet a server in the same state; with one Azurite for the whole run, the cases that ran later
/// met a server already holding every earlier case's blobs, and the ratio measured the order, not the device.
/// </remarks>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory, BenchmarkLogicalGroupRule.ByParams)]
[CategoriesColumn]
public class PageBlobBenchmarks
{
    /// <summary>The blob's size; offsets cycle through it so that requests do not all hit one range.</summary>
    private const long BlobBytes = 64L * 1024 * 1024;

    private AzuriteInstance _azurite = null!;
    private PageBlobBlockDevice _device = null!;
    private PageBlobClient _raw = null!;
    private byte[] _buffer = null!;
    private long _writeOffset;
    private long _readOffset;

    /// <summary>The size of one I/O: a 4 KiB block or a 1 MiB chunk.</summary>
    [Params(4096, 1024 * 1024)]
    public int SizeBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _azurite = AzuriteInstance.StartAsync().GetAwaiter().GetResult();
        var connection = PageBlobConnection.FromConnectionString(_azurite.ConnectionString());
        var blob = $"bench-{SizeBytes}-{Environment.ProcessId}";
        _device = connection.OpenDeviceAsync("bench", blob, BlobBytes).AsTask().GetAwaiter().GetResult();
        _raw = connection.GetPageBlobClient("bench", blob);
        _buffer = new byte[SizeBytes];
        new Random(1).NextBytes(_buffer);

        // Fill the blob once so that reads return written pages rather than an empty range.
        for (long offset = 0; offset < BlobBytes; offset += 4 * 1024 * 1024)
        {
            _device.WriteAsync(offset, new byte[4 * 1024 * 1024]).AsTask().GetAwaiter().GetResult();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _azurite.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark(Baseline = true, Description = "raw UploadPagesAsync")]
    [BenchmarkCategory("Write")]
    public async Task RawWrite()
    {
        using var content = new MemoryStream(_buffer, writable: false);
        await _raw.UploadPagesAsync(content, NextOffset(ref _writeOffset));
    }

    [Benchmark(Description = "device WriteAsync")]
    [BenchmarkCategory("Write")]
    public async Task DeviceWrite() => await _device.WriteAsync(NextOffset(ref _writeOffset), _buffer);

    [Benchmark(Baseline = true, Description = "raw DownloadStreamingAsync")]
    [BenchmarkCategory("Read")]
    public async Task RawRead()
    {
        var range = new BlobDownloadOptions { Range = new HttpRange(NextOffset(ref _readOffset), SizeBytes) };
        using BlobDownloadStreamingResult result = (await _raw.DownloadStreamingAsync(range)).Value;
        await result.Content.ReadExactlyAsync(_buffer);
    }

    [Benchmark(Description = "device ReadAsync")]
    [BenchmarkCategory("Read")]
    public async Task DeviceRead() => await _device.ReadAsync(NextOffset(ref _readOffset), _buffer);

    private long NextOffset(ref long cursor)
    {
        var offset = cursor;
        cursor = (cursor + SizeBytes) % BlobBytes;
        return offset;
    }
}
