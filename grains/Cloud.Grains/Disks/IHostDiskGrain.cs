using Orleans.Concurrency;
using Orleans.Serialization.Buffers;

namespace Cloud.Grains.Disks;

/// <summary>The geometry of a served disk, as its host sees it.</summary>
[GenerateSerializer, Immutable, Alias("cloud.ServedDisk")]
public sealed record ServedDisk(
    [property: Id(0)] long CapacityBytes,
    [property: Id(1)] int SectorSizeBytes,
    [property: Id(2)] int MaxInFlightIo)
{
    /// <summary>The serving silo's disk stream (<c>address:port</c>), or empty when it has none: grain calls only.</summary>
    [Id(3)]
    public string StreamEndpoint { get; init; } = "";

    /// <summary>The key that the serving silo's disk stream asks of a caller; empty with no stream.</summary>
    [Id(4)]
    public byte[] StreamKey { get; init; } = [];
}

/// <summary>
/// The disk service of one silo (key: the silo's stable name, placed on that silo): serves this host's member files
/// to the other silos. Reads and writes carry immutable arrays, so that Orleans does not copy them; a write carries
/// its writer's silo address (with the silo's generation, its epoch), and the service refuses it when the membership
/// has declared that silo dead or a newer generation of it has joined.
/// </summary>
[Alias("cloud.IHostDiskGrain")]
public interface IHostDiskGrain : IGrainWithStringKey
{
    /// <summary>
    /// Opens a member file of this host, creating it at <paramref name="createSizeBytes"/> when it is absent and a size
    /// is given; null when it is absent and none is.
    /// </summary>
    [Alias("Open")]
    Task<ServedDisk?> OpenAsync(string path, long? createSizeBytes);

    /// <summary>Reads <paramref name="lengthBytes"/> at <paramref name="offsetBytes"/>.</summary>
    [Alias("Read")]
    Task<Immutable<byte[]>> ReadAsync(string path, long offsetBytes, int lengthBytes);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offsetBytes"/> for the writer silo
    /// <paramref name="writer"/> (its parsable address).</summary>
    [Alias("Write")]
    Task WriteAsync(string path, long offsetBytes, Immutable<byte[]> data, string writer);

    /// <summary>
    /// Reads <paramref name="lengthBytes"/> at <paramref name="offsetBytes"/> into a pooled buffer: its serializer
    /// returns the reply's segments to the pool once sent, and the caller disposes the buffer it receives, so that no
    /// large array is allocated on either side (<see cref="ReadAsync"/>'s new arrays of 256 KiB and more land on the
    /// large object heap and cost gen2 collections; docs/CLUSTER.md, "Disks across hosts").
    /// </summary>
    [Alias("ReadPooled")]
    Task<PooledBuffer> ReadPooledAsync(string path, long offsetBytes, int lengthBytes);

    /// <summary>
    /// Writes <paramref name="data"/> (<paramref name="lengthBytes"/> long) at <paramref name="offsetBytes"/> for the
    /// writer silo <paramref name="writer"/>; the service disposes the buffer, and the caller must not use it after the
    /// call (its serializer has returned the segments to the pool). A payload of another length is refused.
    /// </summary>
    [Alias("WritePooled")]
    Task WritePooledAsync(string path, long offsetBytes, int lengthBytes, PooledBuffer data, string writer);

    /// <summary>
    /// <see cref="WritePooledAsync"/>, answered once the file is flushed after the write: a durable volume's write in
    /// one request instead of a write and a <see cref="FlushAsync"/>.
    /// </summary>
    [Alias("WritePooledDurable")]
    Task WritePooledDurableAsync(string path, long offsetBytes, int lengthBytes, PooledBuffer data, string writer);

    /// <summary>Makes every acknowledged write of the file durable (fsync).</summary>
    [Alias("Flush")]
    Task FlushAsync(string path);

    /// <summary>The full path, in this host's pool with the most free space, for a new member.</summary>
    [Alias("Place")]
    Task<string> PlaceAsync(string relativePath, long sizeBytes);

    /// <summary>Closes and deletes a member file in this host's pools (and its directory once empty).</summary>
    [Alias("Delete")]
    Task DeleteAsync(string path);
}
