namespace Cloud.Storage.Devices;

/// <summary>
/// The one contract every disk implements: a fixed-size array of sectors with asynchronous
/// reads, writes and a durability barrier. Implementations: file (local NVMe, attached disk or
/// block-device path), Azure page blob, memory (tests), and a fault-injecting decorator.
/// </summary>
/// <remarks>
/// Offsets and lengths must be multiples of <see cref="SectorSizeBytes"/> and lie inside
/// <see cref="CapacityBytes"/>; implementations reject anything else with
/// <see cref="ArgumentOutOfRangeException"/> naming the value and the allowed range.
/// A failed I/O surfaces as <see cref="BlockDeviceException"/> so that a volume can fail the
/// member and carry on degraded. At most <see cref="MaxInFlightIo"/> operations run at once;
/// callers beyond that wait.
/// </remarks>
public interface IBlockDevice : IAsyncDisposable
{
    /// <summary>A name for logs and errors, e.g. the file path or blob URI.</summary>
    string Name { get; }

    /// <summary>The I/O granule in bytes (512 or 4096).</summary>
    int SectorSizeBytes { get; }

    /// <summary>Usable size in bytes, a multiple of <see cref="SectorSizeBytes"/>.</summary>
    long CapacityBytes { get; }

    /// <summary>The bound on concurrently outstanding operations.</summary>
    int MaxInFlightIo { get; }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offsetBytes"/>.</summary>
    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>Writes <paramref name="source"/> at <paramref name="offsetBytes"/>.</summary>
    ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default);

    /// <summary>Returns once every write acknowledged before the call is durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);
}

/// <summary>An I/O failure of one device: the caller may treat the device as failed.</summary>
public class BlockDeviceException : IOException
{
    public BlockDeviceException(string deviceName, string message, Exception? inner = null)
        : base($"{deviceName}: {message}", inner) => DeviceName = deviceName;

    /// <summary>The <see cref="IBlockDevice.Name"/> of the failing device.</summary>
    public string DeviceName { get; }
}
