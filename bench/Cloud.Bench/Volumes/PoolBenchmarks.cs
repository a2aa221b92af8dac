using System.Buffers;
using BenchmarkDotNet.Attributes;
using Cloud.Storage.Volumes;

namespace Cloud.Bench.Volumes;

/// <summary>
/// A rent and a return, as each NBD request makes one (its payload array), from <see cref="PayloadPool"/> against
/// .NET's <see cref="ArrayPool{T}.Shared"/> (the peer) in the same run, for a 4 KiB and a 1 MiB array. PayloadPool hands
/// out exact lengths (the NBD server and the engine need them) where ArrayPool rounds up to a power of two. The memory
/// diagnoser's column is the point of the comparison as much as the time: the hot path allocates nothing per request.
/// </summary>
[Config(typeof(BenchConfig))]
public class PoolBenchmarks
{
    private readonly PayloadPool payloads = new(PayloadPool.DefaultMaxRetainedBytes);

    [Params(4096, 1 << 20)]
    public int Bytes { get; set; }

    [Benchmark(Baseline = true)]
    public int ArrayPoolShared()
    {
        var a = ArrayPool<byte>.Shared.Rent(Bytes);
        var length = a.Length;
        ArrayPool<byte>.Shared.Return(a);
        return length;
    }

    [Benchmark]
    public int PayloadPoolRentReturn()
    {
        var a = payloads.Rent(Bytes);
        var length = a.Length;
        payloads.Return(a);
        return length;
    }
}
