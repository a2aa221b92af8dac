namespace Cloud.Storage.Devices;

/// <summary>
/// A device backed by a byte array, for tests and benchmarks. Concurrent I/O to overlapping ranges
/// may interleave, as on a real disk. <see cref="Contents"/> exposes the raw bytes so that tests can
/// corrupt them or read the on-disk format directly. It offers conditional writes
/// (<see cref="IConditionalBlockDevice"/>) with a counter of writes as the version, like a page blob's ETag.
/// </summary>
public sealed class MemoryBlockDevice : IConditionalBlockDevice
{
    /// <summary>The default queue-depth bound.</summary>
    public const int DefaultMaxInFlightIo = 64;

    private readonly byte[] _bytes;
    private readonly SemaphoreSlim _inFlight;
    private readonly object _conditionalGate = new();
    private long _version;
    private bool _disposed;

    /// <param name="capacityBytes">Size, a positive multiple of <paramref name="sectorSizeBytes"/>, at most
    /// <see cref="Array.MaxLength"/>.</param>
    /// <param name="name">A name for errors.</param>
    /// <param name="sectorSizeBytes">512, 1024, 2048 or 4096.</param>
    /// <param name="maxInFlightIo">The bound on concurrent operations.</param>
    public MemoryBlockDevice(
        long capacityBytes,
        string? name = null,
        int sectorSizeBytes = 512,
        int maxInFlightIo = DefaultMaxInFlightIo)
    {
        Name = name ?? $"memory-{Guid.NewGuid():N}";
        DeviceChecks.CheckGeometry(Name, capacityBytes, sectorSizeBytes, maxInFlightIo);
        if (capacityBytes > Array.MaxLength)
            throw new ArgumentOutOfRangeException(
                nameof(capacityBytes),
                capacityBytes,
                $"{Name}: a memory device holds at most {Array.MaxLength} bytes.");
        _bytes = new byte[capacityBytes];
        SectorSizeBytes = sectorSizeBytes;
        MaxInFlightIo = maxInFlightIo;
        _inFlight = new SemaphoreSlim(maxInFlightIo, maxInFlightIo);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int SectorSizeBytes { get; }

    /// <inheritdoc />
    public long CapacityBytes => _bytes.Length;

    /// <inheritdoc />
    public int MaxInFlightIo { get; }

    /// <summary>The raw bytes of the device (tests use it to corrupt or inspect the format).</summary>
    public Memory<byte> Contents => _bytes;

    /// <inheritdoc />
    public async ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, destination.Length, nameof(destination));
        await EnterAsync(cancellationToken).ConfigureAwait(false);
        try { _bytes.AsSpan((int)offsetBytes, destination.Length).CopyTo(destination.Span); }
        finally { _inFlight.Release(); }
    }

    /// <inheritdoc />
    public async ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, source.Length, nameof(source));
        await EnterAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            source.Span.CopyTo(_bytes.AsSpan((int)offsetBytes, source.Length));
            Interlocked.Increment(ref _version);
        }
        finally { _inFlight.Release(); }
    }

    /// <inheritdoc />
    public async ValueTask<string> ReadVersionedAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, destination.Length, nameof(destination));
        await EnterAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // The version is taken before the copy: a write racing the copy then makes the later conditional write
            // fail, never pass.
            var version = Interlocked.Read(ref _version);
            _bytes.AsSpan((int)offsetBytes, destination.Length).CopyTo(destination.Span);
            return version.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        finally { _inFlight.Release(); }
    }

    /// <inheritdoc />
    public async ValueTask<bool> WriteIfVersionAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        string expectedVersion,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, source.Length, nameof(source));
        ArgumentNullException.ThrowIfNull(expectedVersion);
        await EnterAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_conditionalGate)
            {
                if (Interlocked.Read(ref _version).ToString(System.Globalization.CultureInfo.InvariantCulture)
                    != expectedVersion)
                    return false;
                source.Span.CopyTo(_bytes.AsSpan((int)offsetBytes, source.Length));
                Interlocked.Increment(ref _version);
                return true;
            }
        }
        finally { _inFlight.Release(); }
    }

    /// <inheritdoc />
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _disposed = true;
        return ValueTask.CompletedTask;
    }

    private ValueTask EnterAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Task wait = _inFlight.WaitAsync(cancellationToken);
        return wait.IsCompletedSuccessfully ? ValueTask.CompletedTask : new ValueTask(wait);
    }
}
