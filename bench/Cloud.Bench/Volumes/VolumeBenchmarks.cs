using BenchmarkDotNet.Attributes;
using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.Bench.Volumes;

/// <summary>
/// The volume's data path on memory members (RAID-5 4+1, 64 KiB chunks), against the same I/O on
/// one raw memory device, the baseline of each category: the Ratio column is the cost of striping,
/// parity, checksums and the intent bitmap. Allocated bytes per operation should stay near 0.
/// </summary>
[Config(typeof(BenchConfig))]
public class VolumeBenchmarks
{
    private const int ChunkBytes = 64 * 1024;
    private const long Stripes = 256;

    private RaidVolume volume = null!;
    private MemoryBlockDevice raw = null!;
    private readonly byte[] block = new byte[4096];
    private byte[] stripe = [];
    private long blocks;
    private long next;

    [GlobalSetup]
    public async Task SetupAsync()
    {
        var members = Enumerable.Range(
            0,
            5).Select(i => (IBlockDevice)new MemoryBlockDevice(
                (1 << 20) + Stripes * (ChunkBytes + 4096), $"m{i}")).ToArray();
        volume = await RaidVolume.CreateAsync(
            new VolumeDefinition("bench", Guid.NewGuid(), new VolumeGeometry(RaidLevel.Raid5, 5, ChunkBytes)), members);
        raw = new MemoryBlockDevice(volume.CapacityBytes, "raw");
        stripe = new byte[volume.Geometry.StripeDataBytes];
        new Random(42).NextBytes(stripe);
        new Random(43).NextBytes(block);
        blocks = volume.CapacityBytes / block.Length;
        await volume.WriteAsync(
            0, new byte[volume.CapacityBytes > volume.MaxIoSizeBytes ? volume.MaxIoSizeBytes : volume.CapacityBytes]);
    }

    // A fixed stride through the volume instead of a random generator, so both sides do the same I/O.
    private long NextBlock() => next = (next + 7919) % blocks;

    [BenchmarkCategory("4K write"), Benchmark(Baseline = true)]
    public ValueTask RawWrite4K() => raw.WriteAsync(NextBlock() * block.Length, block);

    [BenchmarkCategory("4K write"), Benchmark]
    public ValueTask VolumeWrite4K() => volume.WriteAsync(NextBlock() * block.Length, block);

    [BenchmarkCategory("4K read"), Benchmark(Baseline = true)]
    public ValueTask RawRead4K() => raw.ReadAsync(NextBlock() * block.Length, block);

    [BenchmarkCategory("4K read"), Benchmark]
    public ValueTask VolumeRead4K() => volume.ReadAsync(NextBlock() * block.Length, block);

    [BenchmarkCategory("full-stripe write"), Benchmark(Baseline = true)]
    public ValueTask RawWriteStripe() => raw.WriteAsync(NextBlock() % Stripes * stripe.Length, stripe);

    [BenchmarkCategory("full-stripe write"), Benchmark]
    public ValueTask VolumeWriteStripe() => volume.WriteAsync(NextBlock() % Stripes * stripe.Length, stripe);
}
