using Cloud.Storage.Devices;
using Cloud.Storage.Volumes;

namespace Cloud.NbdHost;

/// <summary>
/// One block device as a volume, with no redundancy: the baseline that isolates the NBD server's own cost
/// (a RAID volume adds its parity I/O on top).
/// </summary>
internal sealed class DeviceVolume(string name, IBlockDevice device, int maxIoSizeBytes) : IBlockVolume,
    IAsyncDisposable
{
    private static readonly byte[] Zeroes = new byte[1 << 20];

    public string Name { get; } = name;
    public long CapacityBytes { get; } = device.CapacityBytes / 4096 * 4096;
    public int BlockSizeBytes => 4096;
    public int PreferredIoSizeBytes => 4096;
    public int MaxIoSizeBytes { get; } = maxIoSizeBytes;

    public ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
        => device.ReadAsync(offsetBytes, destination, cancellationToken);

    public async ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default)
    {
        await device.WriteAsync(offsetBytes, source, cancellationToken);
        if (forceUnitAccess)
        {
            await device.FlushAsync(cancellationToken);
        }
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => device.FlushAsync(cancellationToken);

    public async ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        for (long done = 0; done < lengthBytes; done += Zeroes.Length)
        {
            var piece = (int)Math.Min(Zeroes.Length, lengthBytes - done);
            await device.WriteAsync(offsetBytes + done, Zeroes.AsMemory(0, piece), cancellationToken);
        }
    }

    public ValueTask DisposeAsync() => device.DisposeAsync();
}
