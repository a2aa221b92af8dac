using Cloud.Grains.Abstractions;

namespace Cloud.Client;

/// <summary>
/// A volume's data plane: sector-aligned reads and writes (split into requests of at most
/// <see cref="MaxRequestBytes"/>, run <see cref="MaxParallelRequests"/> at a time), flush, trim, and a seekable
/// <see cref="Stream"/>.
/// </summary>
public sealed class CloudVolume
{
    /// <summary>
    /// The logical block: the service's unit on disk. Whole aligned blocks are written without reading first; a
    /// request that covers a block only in part makes the service read and rewrite that block.
    /// </summary>
    public const int BlockSizeBytes = 4096;

    /// <summary>The addressable unit: offsets and lengths of reads, writes and trims are multiples of it.</summary>
    public const int SectorSizeBytes = 512;

    /// <summary>Largest single request sent to the front end.</summary>
    public const int MaxRequestBytes = 4 << 20;

    /// <summary>Requests in flight per call.</summary>
    public const int MaxParallelRequests = 8;

    /// <summary>
    /// How long a request that meets a lost silo is asked again. Between a silo's death and the cluster declaring it
    /// (seconds), the gateway may fail to place a request (its directory lookup lands on the dead silo); afterwards
    /// the same request succeeds.
    /// </summary>
    public static readonly TimeSpan SiloLossRetryBound = TimeSpan.FromSeconds(30);

    private readonly IClusterClient _cluster;

    internal CloudVolume(IClusterClient cluster, VolumeInfo info)
    {
        _cluster = cluster;
        Info = info;
    }

    /// <summary>The volume's definition.</summary>
    public VolumeInfo Info { get; }

    /// <summary>The volume's name.</summary>
    public string Name => Info.Name;

    /// <summary>Logical size in bytes.</summary>
    public long SizeBytes => Info.SizeBytes;

    private IFirstServerGrain FrontEnd => _cluster.GetGrain<IFirstServerGrain>(0);

    private void Check(long offsetBytes, long lengthBytes)
    {
        if (offsetBytes < 0 || offsetBytes % SectorSizeBytes != 0)
            throw new ArgumentOutOfRangeException(
                nameof(offsetBytes), offsetBytes, $"offset must be a multiple of {SectorSizeBytes} from 0");
        if (lengthBytes % SectorSizeBytes != 0)
            throw new ArgumentOutOfRangeException(
                nameof(lengthBytes), lengthBytes, $"length must be a multiple of {SectorSizeBytes}");
        if (offsetBytes + lengthBytes > SizeBytes)
            throw new ArgumentOutOfRangeException(
                nameof(lengthBytes),
                lengthBytes,
                $"range {offsetBytes}+{lengthBytes} ends past the volume's {SizeBytes} bytes");
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offsetBytes"/>.</summary>
    public async Task ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        Check(offsetBytes, destination.Length);
        await ForEachPieceAsync(destination.Length, async (at, length) =>
        {
            var data = await SiloLoss.RetryAsync(
                () => FrontEnd.ReadAsync(Name, offsetBytes + at, length), cancellationToken).ConfigureAwait(false);
            data.CopyTo(destination.Slice(at, length));
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// Writes <paramref name="source"/> at <paramref name="offsetBytes"/>; with FUA, returns once it is on disk.
    /// </summary>
    public async Task WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default)
    {
        Check(offsetBytes, source.Length);
        // A write asked again writes the same bytes at the same place: the service's newer timestamp orders it after
        // any write it may have overtaken, within this call's span.
        await ForEachPieceAsync(source.Length, (at, length) =>
        {
            var piece = source.Slice(at, length).ToArray();
            return SiloLoss.RetryAsync(
                () => FrontEnd.WriteAsync(Name, offsetBytes + at, piece, forceUnitAccess), cancellationToken);
        }).ConfigureAwait(false);
    }

    /// <summary>Returns once every write acknowledged before the call is durable.</summary>
    public Task FlushAsync(CancellationToken cancellationToken = default)
        => SiloLoss.RetryAsync(() => FrontEnd.FlushAsync(Name), cancellationToken);

    /// <summary>Discards a range; reads then return zeroes.</summary>
    public Task TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        Check(offsetBytes, lengthBytes);
        return SiloLoss.RetryAsync(() => FrontEnd.TrimAsync(Name, offsetBytes, lengthBytes), cancellationToken);
    }

    /// <summary>
    /// A seekable stream over the volume (any offset and length; partial blocks are read, patched and written back).
    /// </summary>
    public Stream OpenStream() => new CloudVolumeStream(this);

    private static async Task ForEachPieceAsync(int lengthBytes, Func<int, int, Task> piece)
    {
        using var gate = new SemaphoreSlim(MaxParallelRequests);
        var tasks = new List<Task>();
        for (var at = 0; at < lengthBytes; at += MaxRequestBytes)
        {
            var start = at;
            var length = Math.Min(MaxRequestBytes, lengthBytes - at);
            await gate.WaitAsync().ConfigureAwait(false);
            tasks.Add(Run(start, length));
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);

        async Task Run(int start, int length)
        {
            try { await piece(start, length).ConfigureAwait(false); }
            finally { gate.Release(); }
        }
    }
}
