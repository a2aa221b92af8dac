namespace Cloud.Storage.Devices;

/// <summary>
/// A device that can write only if nothing was written to it since a read: an optimistic update for
/// on-disk structures that several processes may rewrite (the volume's superblock). Optional: a
/// volume uses it when a member offers it (Azure page blobs: the blob's ETag with If-Match; the
/// memory device: a write counter) and falls back to plain writes otherwise.
/// </summary>
/// <remarks>
/// The version covers the whole device, so a data write anywhere by anyone also invalidates it; a
/// caller retries with a bound.
/// </remarks>
public interface IConditionalBlockDevice : IBlockDevice
{
    /// <summary>
    /// Reads <paramref name="destination"/> in one request and returns the device's version at that moment.
    /// </summary>
    ValueTask<string> ReadVersionedAsync(
        long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes <paramref name="source"/> in one request only if the device is still at
    /// <paramref name="expectedVersion"/>; returns false, writing nothing, when another write came first.
    /// </summary>
    ValueTask<bool> WriteIfVersionAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        string expectedVersion,
        CancellationToken cancellationToken = default);
}
