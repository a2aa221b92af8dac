using Cloud.Grains.Abstractions;
using Cloud.Grains.FirstServers;
using Cloud.Storage.Volumes;

namespace Cloud.Silo.Nbd;

/// <summary>
/// A Cloud volume as the NBD server sees it: every request goes to this silo's first server
/// (<see cref="FirstServerService"/>,
/// the work behind the first-server grain, called in process: no Orleans message, and reads land straight in the NBD
/// server's buffer), so NBD clients take the same path as SDK clients: writes are timestamped and delegated under the
/// partition locks, reads take a shared lock after every acknowledged earlier write, and FUA and FLUSH wait for the
/// service's durable acknowledgement.
/// </summary>
/// <remarks>
/// The handle keeps no cache and no private state beyond the volume's geometry, so any number of connections may use
/// separate handles: a write is acknowledged only once the silo's first server holds it, and a flush drains every
/// copy the first server holds for the volume (from every connection) before it fsyncs the members on every silo.
/// </remarks>
internal sealed class FirstServerVolume : IBufferOwningVolume
{
    private readonly FirstServerService _firstServer;

    public FirstServerVolume(FirstServerService firstServer, VolumeInfo info, int maxIoSizeBytes)
    {
        _firstServer = firstServer;
        Info = info;
        MaxIoSizeBytes = maxIoSizeBytes;
        PreferredIoSizeBytes = (int)Math.Clamp(
            Grains.VolumeMath.StripeDataBytes(info), Grains.VolumeMath.BlockSizeBytes, maxIoSizeBytes);
    }

    /// <summary>The volume's definition when the connection opened it.</summary>
    public VolumeInfo Info { get; }

    public string Name => Info.Name;

    public long CapacityBytes => Info.SizeBytes;

    public int BlockSizeBytes => Grains.VolumeMath.BlockSizeBytes;

    /// <summary>
    /// 512 bytes: the first server reads and rewrites a block that a request covers only in part (see
    /// <see cref="SectorWrites"/>), so NBD clients may address any sector.
    /// </summary>
    public int SectorSizeBytes => Grains.VolumeMath.SectorSizeBytes;

    /// <summary>A full stripe of data: a write of it needs no read-modify-write of parity.</summary>
    public int PreferredIoSizeBytes { get; }

    public int MaxIoSizeBytes { get; }

    /// <remarks>
    /// Not abandoned on cancellation: the engine writes into <paramref name="destination"/>, the NBD server's pooled
    /// buffer, so the call must not return before the read has finished with it.
    /// </remarks>
    public ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default) =>
        new(_firstServer.ReadAsync(Name, offsetBytes, destination));

    public ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default)
    {
        // The NBD server's buffer goes back to its pool after the reply, while the first server keeps this copy until
        // the target commits it (and Orleans does not copy [Immutable] arguments): so it must be our own array.
        var copy = source.ToArray();
        return new ValueTask(
            _firstServer.WriteAsync(Name, offsetBytes, copy, forceUnitAccess).WaitAsync(cancellationToken));
    }

    /// <summary>
    /// The NBD server's own array for this write (it reads each payload into an array it then gives up): no copy, and
    /// the array is recycled once the write commits.
    /// </summary>
    public ValueTask WriteOwnedAsync(
        long offsetBytes,
        byte[] data,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default) =>
        new(
            _firstServer.WriteAsync(
                Name, offsetBytes, data, forceUnitAccess, recycle: true).WaitAsync(cancellationToken));

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        new(_firstServer.FlushAsync(Name).WaitAsync(cancellationToken));

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default) =>
        new(_firstServer.TrimAsync(Name, offsetBytes, lengthBytes).WaitAsync(cancellationToken));
}
