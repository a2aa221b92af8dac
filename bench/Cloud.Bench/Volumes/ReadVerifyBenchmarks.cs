using System.IO.MemoryMappedFiles;
using BenchmarkDotNet.Attributes;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Microsoft.Win32.SafeHandles;

namespace Cloud.Bench.Volumes;

/// <summary>
/// What verifying a 1 MiB read's block checksums costs with and without the copy out of the page cache, on a file
/// held in the page cache (256 MiB, more than the CPU's caches, read 1 MiB at a time at a fixed stride). The baseline
/// is today's read: the range copied into the request's buffer, then each 4 KiB block hashed there. Against it: the
/// copy alone, and the blocks hashed in place through a read-only mapping of the file, as a reply sent from the page
/// cache (<c>bench/zero-copy-read.py</c>) would need. Pair with that script's figures: it prices the socket copy, this
/// the page-cache copy. Inside the NBD server, with the file's pages spread over members and other work on both cores,
/// hashing through a mapping cost far more than here (docs/BENCHMARKS.md, "The zero-copy read, built and measured
/// three ways").
/// </summary>
[Config(typeof(BenchConfig))]
public unsafe class ReadVerifyBenchmarks
{
    private const int ReadBytes = 1 << 20;
    private const int FileMiB = 256;

    private string path = "";
    private SafeFileHandle file = null!;
    private MemoryMappedFile map = null!;
    private MemoryMappedViewAccessor view = null!;
    private byte* mapped;
    private readonly byte[] buffer = GC.AllocateArray<byte>(ReadBytes, pinned: true);
    private long next;
    private ulong sink;

    [GlobalSetup]
    public void Setup()
    {
        path = Path.Combine(Path.GetTempPath(), $"cloud-read-verify-{Environment.ProcessId}.img");
        var chunk = new byte[ReadBytes];
        using (var f = File.Create(path))
        {
            var random = new Random(42);
            for (var i = 0; i < FileMiB; i++)
            {
                random.NextBytes(chunk);
                f.Write(chunk);
            }
        }
        file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        // Into the page cache, as a volume's hot data is.
        for (long at = 0; at < (long)FileMiB * ReadBytes; at += ReadBytes) RandomAccess.Read(file, chunk, at);
        map = MemoryMappedFile.CreateFromFile(
            file, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref mapped);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        map.Dispose();
        file.Dispose();
        File.Delete(path);
    }

    // A fixed stride (an odd number of MiB) through the file, so every benchmark reads the same ranges.
    private long NextOffset() => (next = (next + 37) % FileMiB) * ReadBytes;

    private static ulong HashBlocks(ReadOnlySpan<byte> range)
    {
        ulong all = 0;
        for (var at = 0; at < range.Length; at += VolumeGeometry.BlockSizeBytes)
            all ^= OnDiskFormat.BlockChecksum(range.Slice(at, VolumeGeometry.BlockSizeBytes));
        return all;
    }

    [BenchmarkCategory("1 MiB read"), Benchmark(Baseline = true)]
    public ulong CopyThenVerify()
    {
        RandomAccess.Read(file, buffer, NextOffset());
        return sink ^= HashBlocks(buffer);
    }

    [BenchmarkCategory("1 MiB read"), Benchmark]
    public int CopyOnly() => RandomAccess.Read(file, buffer, NextOffset());

    [BenchmarkCategory("1 MiB read"), Benchmark]
    public ulong VerifyMapped() => sink ^= HashBlocks(new ReadOnlySpan<byte>(mapped + NextOffset(), ReadBytes));
}
