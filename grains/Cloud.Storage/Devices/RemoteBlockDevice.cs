using System.Buffers;

namespace Cloud.Storage.Devices;

/// <summary>
/// The wire beneath a <see cref="RemoteBlockDevice"/>: one contiguous read, write or flush of one disk that another
/// process (another host's silo) serves. The engine knows nothing of the transport; the grains implement it.
/// </summary>
/// <remarks>
/// A channel receives only requests the device has already checked (sector-aligned, inside the capacity, within the
/// in-flight bound). Any failure it throws, other than cancellation, the device reports as a
/// <see cref="BlockDeviceException"/>, so that the volume fails the member on the serving host's evidence.
/// </remarks>
public interface IRemoteDiskChannel : IAsyncDisposable
{
    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offsetBytes"/>.</summary>
    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>Writes <paramref name="source"/> at <paramref name="offsetBytes"/>; the buffer is the caller's
    /// again when the returned task completes.</summary>
    ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken);

    /// <summary>Returns once every write the server acknowledged before the call is durable there.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>
    /// <see cref="WriteGatherAsync"/>, answered once the range is durable on the server. By default a write and then
    /// a flush; a channel that can ask for both in one request saves the second round trip.
    /// </summary>
    async ValueTask WriteGatherDurableAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, int totalBytes, CancellationToken cancellationToken)
    {
        await WriteGatherAsync(offsetBytes, sources, totalBytes, cancellationToken).ConfigureAwait(false);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads two ranges as one request (<see cref="IVectoredBlockDevice.ReadSplitAsync"/>). By default two reads at
    /// once; a channel that can ask for both in one request saves a request's cost on both hosts.
    /// </summary>
    ValueTask ReadSplitAsync(
        long offsetBytes, Memory<byte> first, long secondOffsetBytes, Memory<byte> second, CancellationToken cancellationToken)
    {
        var a = ReadAsync(offsetBytes, first, cancellationToken);
        ValueTask b;
        try { b = ReadAsync(secondOffsetBytes, second, cancellationToken); }
        catch (Exception e) { b = ValueTask.FromException(e); }
        return DeviceIo.BothAsync(a, b);
    }

    /// <summary>
    /// Writes two ranges as one request (<see cref="IVectoredBlockDevice.WriteSplitAsync"/>). By default two writes at
    /// once.
    /// </summary>
    ValueTask WriteSplitAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> first,
        long secondOffsetBytes,
        ReadOnlyMemory<byte> second,
        CancellationToken cancellationToken)
    {
        var a = WriteAsync(offsetBytes, first, cancellationToken);
        ValueTask b;
        try { b = WriteAsync(secondOffsetBytes, second, cancellationToken); }
        catch (Exception e) { b = ValueTask.FromException(e); }
        return DeviceIo.BothAsync(a, b);
    }

    /// <summary>
    /// Reads <paramref name="totalBytes"/> at <paramref name="offsetBytes"/> as one request into
    /// <paramref name="destinations"/> in turn. By default through one pooled staging buffer; a channel whose reply
    /// already is a buffer of its own copies from it straight into the pieces.
    /// </summary>
    async ValueTask ReadScatterAsync(
        long offsetBytes, IReadOnlyList<Memory<byte>> destinations, int totalBytes, CancellationToken cancellationToken)
    {
        var staging = ArrayPool<byte>.Shared.Rent(totalBytes);
        try
        {
            await ReadAsync(offsetBytes, staging.AsMemory(0, totalBytes), cancellationToken).ConfigureAwait(false);
            var at = 0;
            for (var i = 0; i < destinations.Count; i++)
            {
                staging.AsSpan(at, destinations[i].Length).CopyTo(destinations[i].Span);
                at += destinations[i].Length;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(staging);
        }
    }

    /// <summary>
    /// Writes <paramref name="sources"/> (<paramref name="totalBytes"/> in all) in turn at
    /// <paramref name="offsetBytes"/> as one request; the buffers are the caller's again when the returned task
    /// completes. By default through one pooled staging buffer; a channel that copies the payload anyway copies each
    /// piece once.
    /// </summary>
    async ValueTask WriteGatherAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, int totalBytes, CancellationToken cancellationToken)
    {
        var staging = ArrayPool<byte>.Shared.Rent(totalBytes);
        try
        {
            var at = 0;
            for (var i = 0; i < sources.Count; i++)
            {
                sources[i].Span.CopyTo(staging.AsSpan(at));
                at += sources[i].Length;
            }
            // The channel is done with the buffer when the write completes, so it goes back to the pool only then.
            await WriteAsync(offsetBytes, staging.AsMemory(0, totalBytes), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(staging);
        }
    }
}

/// <summary>
/// A member disk served by another host, as an <see cref="IVectoredBlockDevice"/> on this side: the volume opens it
/// like a local file. Requests are checked here (so that a bad range never crosses the network), bounded by
/// <see cref="MaxInFlightIo"/>, and a scatter or gather is one request on the wire, its pieces copied straight into or
/// out of the channel's payload (or through a pooled staging buffer, by default).
/// </summary>
public sealed class RemoteBlockDevice : IVectoredBlockDevice
{
    private readonly IRemoteDiskChannel _channel;
    private readonly SemaphoreSlim _inFlight;

    /// <param name="name">The member's name for logs and errors, e.g. <c>h2:/pool/v/disk1.img</c>.</param>
    /// <param name="capacityBytes">The serving host's capacity of the disk.</param>
    /// <param name="sectorSizeBytes">The serving host's sector size of the disk.</param>
    /// <param name="maxInFlightIo">The bound on outstanding requests from this side, 1..4096.</param>
    /// <param name="channel">The transport; owned (disposed) by the device.</param>
    public RemoteBlockDevice(
        string name,
        long capacityBytes,
        int sectorSizeBytes,
        int maxInFlightIo,
        IRemoteDiskChannel channel)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(channel);
        DeviceChecks.CheckGeometry(name, capacityBytes, sectorSizeBytes, maxInFlightIo);
        Name = name;
        CapacityBytes = capacityBytes;
        SectorSizeBytes = sectorSizeBytes;
        MaxInFlightIo = maxInFlightIo;
        _channel = channel;
        _inFlight = new SemaphoreSlim(maxInFlightIo, maxInFlightIo);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int SectorSizeBytes { get; }

    /// <inheritdoc />
    public long CapacityBytes { get; }

    /// <inheritdoc />
    public int MaxInFlightIo { get; }

    /// <inheritdoc />
    public async ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, destination.Length, nameof(destination));
        if (destination.Length == 0) return;
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(_channel.ReadAsync(offsetBytes, destination, cancellationToken), "read", offsetBytes)
                .ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, source.Length, nameof(source));
        if (source.Length == 0) return;
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(_channel.WriteAsync(offsetBytes, source, cancellationToken), "write", offsetBytes)
                .ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask ReadScatterAsync(
        long offsetBytes, IReadOnlyList<Memory<byte>> destinations, CancellationToken cancellationToken = default)
    {
        var total = DeviceChecks.CheckVector(this, offsetBytes, destinations, d => d.Length, nameof(destinations));
        if (total == 0) return;
        if (destinations.Count == 1)
        {
            await ReadAsync(offsetBytes, destinations[0], cancellationToken).ConfigureAwait(false);
            return;
        }
        // One request for the whole range, so that a chunk and its metadata sector cost one round trip.
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(_channel.ReadScatterAsync(offsetBytes, destinations, total, cancellationToken), "read", offsetBytes)
                .ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask WriteGatherAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, CancellationToken cancellationToken = default)
    {
        var total = DeviceChecks.CheckVector(this, offsetBytes, sources, s => s.Length, nameof(sources));
        if (total == 0) return;
        if (sources.Count == 1)
        {
            await WriteAsync(offsetBytes, sources[0], cancellationToken).ConfigureAwait(false);
            return;
        }
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(_channel.WriteGatherAsync(offsetBytes, sources, total, cancellationToken), "write", offsetBytes)
                .ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask WriteGatherDurableAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, CancellationToken cancellationToken = default)
    {
        var total = DeviceChecks.CheckVector(this, offsetBytes, sources, s => s.Length, nameof(sources));
        if (total == 0) return;
        // One request, write and flush: a durable volume's write otherwise crosses the network twice per member.
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(
                    _channel.WriteGatherDurableAsync(offsetBytes, sources, total, cancellationToken), "durable write", offsetBytes)
                .ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask ReadSplitAsync(
        long offsetBytes,
        Memory<byte> first,
        long secondOffsetBytes,
        Memory<byte> second,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, first.Length, nameof(first));
        DeviceChecks.CheckIo(this, secondOffsetBytes, second.Length, nameof(second));
        if (first.Length == 0 || second.Length == 0)
        {
            await ReadAsync(first.Length == 0 ? secondOffsetBytes : offsetBytes, first.Length == 0 ? second : first, cancellationToken)
                .ConfigureAwait(false);
            return;
        }
        // One request for both ranges: a chunk's rows and its metadata sector cost one request on each host.
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(
                    _channel.ReadSplitAsync(offsetBytes, first, secondOffsetBytes, second, cancellationToken),
                    "read",
                    offsetBytes)
                .ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask WriteSplitAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> first,
        long secondOffsetBytes,
        ReadOnlyMemory<byte> second,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, first.Length, nameof(first));
        DeviceChecks.CheckIo(this, secondOffsetBytes, second.Length, nameof(second));
        if (first.Length == 0 || second.Length == 0)
        {
            await WriteAsync(first.Length == 0 ? secondOffsetBytes : offsetBytes, first.Length == 0 ? second : first, cancellationToken)
                .ConfigureAwait(false);
            return;
        }
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(
                    _channel.WriteSplitAsync(offsetBytes, first, secondOffsetBytes, second, cancellationToken),
                    "write",
                    offsetBytes)
                .ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Guard(_channel.FlushAsync(cancellationToken), "flush", 0).ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _channel.DisposeAsync().ConfigureAwait(false);
        _inFlight.Dispose();
    }

    /// <summary>
    /// Turns a failure of the transport or of the serving host (its disk's error, a fenced write, a lost connection)
    /// into the one exception a volume fails a member on.
    /// </summary>
    private async ValueTask Guard(ValueTask operation, string what, long offsetBytes)
    {
        try
        {
            await operation.ConfigureAwait(false);
        }
        catch (BlockDeviceException)
        {
            throw;
        }
        catch (OperationCanceledException)
        {
            throw;
        }
        catch (Exception ex)
        {
            throw new BlockDeviceException(Name, $"remote {what} at {offsetBytes} failed: {ex.Message}", ex);
        }
    }
}
