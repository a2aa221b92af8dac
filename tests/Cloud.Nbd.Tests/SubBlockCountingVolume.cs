using Cloud.Storage.Volumes;

namespace Cloud.Nbd.Tests;

/// <summary>
/// Passes every request to the engine volume it wraps and counts the reads and writes that start or end inside a
/// block, so that an interop test can show those requests reached the server (and the engine's read-modify-write)
/// rather than being made whole by the client.
/// </summary>
internal sealed class SubBlockCountingVolume(IBlockVolume inner) : IBlockVolume, IAsyncDisposable
{
    private int _subBlockReads;
    private int _subBlockWrites;

    public int SubBlockReads => Volatile.Read(ref _subBlockReads);
    public int SubBlockWrites => Volatile.Read(ref _subBlockWrites);
    public string Name => inner.Name;
    public long CapacityBytes => inner.CapacityBytes;
    public int BlockSizeBytes => inner.BlockSizeBytes;
    public int SectorSizeBytes => inner.SectorSizeBytes;
    public int PreferredIoSizeBytes => inner.PreferredIoSizeBytes;
    public int MaxIoSizeBytes => inner.MaxIoSizeBytes;

    private bool IsSubBlock(long offsetBytes, long lengthBytes) =>
        offsetBytes % BlockSizeBytes != 0 || lengthBytes % BlockSizeBytes != 0;

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (IsSubBlock(offsetBytes, destination.Length)) Interlocked.Increment(ref _subBlockReads);
        return inner.ReadAsync(offsetBytes, destination, cancellationToken);
    }

    public ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default)
    {
        if (IsSubBlock(offsetBytes, source.Length)) Interlocked.Increment(ref _subBlockWrites);
        return inner.WriteAsync(offsetBytes, source, forceUnitAccess, cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        inner.TrimAsync(offsetBytes, lengthBytes, cancellationToken);

    public ValueTask DisposeAsync() => TestVolumes.DisposeAsync(inner);
}
