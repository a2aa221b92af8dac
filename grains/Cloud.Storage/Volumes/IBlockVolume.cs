namespace Cloud.Storage.Volumes;

/// <summary>
/// The data-plane view of a virtual volume that front ends (NBD, the client SDK) serve:
/// byte-addressed I/O aligned to <see cref="SectorSizeBytes"/>, with FUA, flush and trim.
/// </summary>
public interface IBlockVolume
{
    /// <summary>The volume's name (the NBD export name).</summary>
    string Name { get; }

    /// <summary>Logical size in bytes, a multiple of <see cref="BlockSizeBytes"/>.</summary>
    long CapacityBytes { get; }

    /// <summary>
    /// The logical block (4096 bytes for the engine): the volume's own unit. I/O of whole aligned blocks needs no
    /// read-modify-write.
    /// </summary>
    int BlockSizeBytes { get; }

    /// <summary>
    /// The minimum I/O granule: offsets and lengths of every request are multiples of it. A power of two no larger
    /// than <see cref="BlockSizeBytes"/>; a volume whose sectors are smaller than its blocks reads the enclosing
    /// blocks of a partial one and, for a write or trim, rewrites them without losing a concurrent write to their
    /// other sectors. Volumes that take whole blocks only keep the default.
    /// </summary>
    int SectorSizeBytes => BlockSizeBytes;

    /// <summary>An I/O size that avoids read-modify-write where the layout allows (a full stripe of data).</summary>
    int PreferredIoSizeBytes { get; }

    /// <summary>The largest single request accepted.</summary>
    int MaxIoSizeBytes { get; }

    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <param name="forceUnitAccess">When true, return only once the data is durable on the member disks.</param>
    ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default);

    /// <summary>Returns once every write acknowledged before the call is durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Discards a range; subsequent reads return zeroes.</summary>
    ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default);
}

/// <summary>
/// A volume that can take over a write's buffer: a front end that would otherwise copy each write (because it keeps
/// the data after acknowledging it) uses the caller's array instead. The caller gives the array up: it must not read,
/// change or reuse it after the call, whatever the call's outcome. The volume may hand it to
/// <see cref="PayloadPool.Shared"/> once it holds no copy of it any more.
/// </summary>
public interface IBufferOwningVolume : IBlockVolume
{
    /// <summary>
    /// Writes all of <paramref name="data"/> at <paramref name="offsetBytes"/>, keeping the array as the written copy.
    /// </summary>
    /// <param name="forceUnitAccess">When true, return only once the data is durable on the member disks.</param>
    ValueTask WriteOwnedAsync(
        long offsetBytes, byte[] data, bool forceUnitAccess = false, CancellationToken cancellationToken = default);
}
