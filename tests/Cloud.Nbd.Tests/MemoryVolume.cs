using Cloud.Storage.Volumes;

namespace Cloud.Nbd.Tests;

/// <summary>
/// An in-memory <see cref="IBlockVolume"/> for protocol tests: bounds-checked like a real volume, and it counts
/// flushes, FUA writes and trims so tests can see what the server asked of it.
/// </summary>
internal sealed class MemoryVolume : IBlockVolume
{
    private readonly byte[] _data;
    private readonly object _gate = new();
    private int _flushes;
    private int _fuaWrites;
    private int _trims;
    private int _writes;

    public MemoryVolume(
        string name,
        long capacityBytes,
        int blockSizeBytes = 4096,
        int preferredIoSizeBytes = 256 << 10,
        int maxIoSizeBytes = 1 << 20,
        bool yieldOnIo = true)
    {
        Name = name;
        CapacityBytes = capacityBytes;
        BlockSizeBytes = blockSizeBytes;
        PreferredIoSizeBytes = preferredIoSizeBytes;
        MaxIoSizeBytes = maxIoSizeBytes;
        YieldOnIo = yieldOnIo;
        _data = new byte[capacityBytes];
    }

    public string Name { get; }
    public long CapacityBytes { get; }
    public int BlockSizeBytes { get; }
    public int PreferredIoSizeBytes { get; }
    public int MaxIoSizeBytes { get; }

    /// <summary>
    /// Completes I/O asynchronously, so the server's concurrent paths run as they would against disks.
    /// </summary>
    public bool YieldOnIo { get; }

    public int Flushes => Volatile.Read(ref _flushes);
    public int FuaWrites => Volatile.Read(ref _fuaWrites);
    public int Trims => Volatile.Read(ref _trims);
    public int Writes => Volatile.Read(ref _writes);

    public byte[] Snapshot()
    {
        lock (_gate)
        {
            return (byte[])_data.Clone();
        }
    }

    public async ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        Check(offsetBytes, destination.Length);
        if (YieldOnIo)
        {
            await Task.Yield();
        }
        lock (_gate)
        {
            _data.AsSpan((int)offsetBytes, destination.Length).CopyTo(destination.Span);
        }
    }

    public async ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        bool forceUnitAccess = false,
        CancellationToken cancellationToken = default)
    {
        Check(offsetBytes, source.Length);
        if (YieldOnIo)
        {
            await Task.Yield();
        }
        lock (_gate)
        {
            source.Span.CopyTo(_data.AsSpan((int)offsetBytes));
        }
        Interlocked.Increment(ref _writes);
        if (forceUnitAccess)
        {
            Interlocked.Increment(ref _fuaWrites);
        }
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _flushes);
        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
    {
        Check(offsetBytes, lengthBytes);
        lock (_gate)
        {
            _data.AsSpan((int)offsetBytes, (int)lengthBytes).Clear();
        }
        Interlocked.Increment(ref _trims);
        return ValueTask.CompletedTask;
    }

    private void Check(long offsetBytes, long lengthBytes)
    {
        if (offsetBytes < 0
            || lengthBytes < 0
            || offsetBytes > CapacityBytes - lengthBytes
            || offsetBytes % BlockSizeBytes != 0
            || lengthBytes % BlockSizeBytes != 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(offsetBytes),
                $"I/O at {offsetBytes} length {lengthBytes} is outside the {CapacityBytes}-byte volume or unaligned");
        }
        if (lengthBytes > MaxIoSizeBytes && lengthBytes != 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(lengthBytes), $"I/O of {lengthBytes} bytes exceeds MaxIoSizeBytes {MaxIoSizeBytes}");
        }
    }
}

/// <summary>Serves a fixed set of volumes by name.</summary>
internal sealed class MapResolver(params IBlockVolume[] volumes) : INbdExportResolver
{
    private readonly Dictionary<string, IBlockVolume> _volumes = volumes.ToDictionary(v => v.Name);
    private int _released;

    public int Released => Volatile.Read(ref _released);

    /// <summary>The grants the server applies (the same rule the silo applies to the catalog's grants).</summary>
    public NbdAccessList Access { get; set; } = NbdAccessList.Open;

    public ValueTask<NbdAccess> GetAccessAsync(string exportName, string? clientIdentity, CancellationToken ct)
        => ValueTask.FromResult(Access.AccessOf(exportName, clientIdentity));

    public ValueTask<IReadOnlyList<string>> ListAsync(string? clientIdentity, CancellationToken ct)
        => ValueTask.FromResult(Access.Visible(_volumes.Keys.Order(StringComparer.Ordinal), clientIdentity));

    public ValueTask<IBlockVolume?> OpenAsync(string exportName, CancellationToken ct)
        => ValueTask.FromResult(_volumes.GetValueOrDefault(exportName));

    public ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct)
        => ValueTask.FromResult<IReadOnlyList<string>>(_volumes.Keys.Order(StringComparer.Ordinal).ToList());

    public ValueTask ReleaseAsync(IBlockVolume volume)
    {
        Interlocked.Increment(ref _released);
        return ValueTask.CompletedTask;
    }
}
