namespace Cloud.Storage.Devices;

/// <summary>
/// A device that moves several buffers to or from one contiguous range in a single request (the file device:
/// <c>preadv</c>/<c>pwritev</c>). Optional: a volume uses it where a member offers it (a chunk together with the
/// metadata sector that follows it, or one member's chunks of several consecutive stripes) and issues one plain
/// I/O per buffer otherwise.
/// </summary>
/// <remarks>
/// The same rules as <see cref="IBlockDevice.ReadAsync"/> and <see cref="IBlockDevice.WriteAsync"/> apply to the
/// whole range and to each buffer: every buffer's length is a multiple of <see cref="IBlockDevice.SectorSizeBytes"/>,
/// and the range lies inside <see cref="IBlockDevice.CapacityBytes"/>. The request counts as one in-flight I/O.
/// </remarks>
public interface IVectoredBlockDevice : IBlockDevice
{
    /// <summary>
    /// Reads the bytes at <paramref name="offsetBytes"/> into each of <paramref name="destinations"/> in turn.
    /// </summary>
    ValueTask ReadScatterAsync(
        long offsetBytes, IReadOnlyList<Memory<byte>> destinations, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes each of <paramref name="sources"/> in turn, the first at <paramref name="offsetBytes"/>.
    /// </summary>
    ValueTask WriteGatherAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, CancellationToken cancellationToken = default);

    /// <summary>
    /// <see cref="WriteGatherAsync"/>, returning once the written range is durable (a forced-unit-access write). By
    /// default the write and then <see cref="IBlockDevice.FlushAsync"/>; a device whose flush is a request of its own
    /// (a member on another host) sends both as one.
    /// </summary>
    async ValueTask WriteGatherDurableAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, CancellationToken cancellationToken = default)
    {
        await WriteGatherAsync(offsetBytes, sources, cancellationToken).ConfigureAwait(false);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }
}
