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

    /// <summary>
    /// Reads two ranges as one request: <paramref name="first"/> at <paramref name="offsetBytes"/> and
    /// <paramref name="second"/> at <paramref name="secondOffsetBytes"/> (a chunk's rows and the metadata sector that
    /// rows the request leaves out separate from them). By default two reads at once; a device whose every request
    /// crosses a network (a member on another host) sends one.
    /// </summary>
    ValueTask ReadSplitAsync(
        long offsetBytes,
        Memory<byte> first,
        long secondOffsetBytes,
        Memory<byte> second,
        CancellationToken cancellationToken = default)
    {
        var a = ReadAsync(offsetBytes, first, cancellationToken);
        ValueTask b;
        try { b = ReadAsync(secondOffsetBytes, second, cancellationToken); }
        catch (Exception e) { b = ValueTask.FromException(e); }
        return DeviceIo.BothAsync(a, b);
    }

    /// <summary>
    /// Writes two ranges as one request (<see cref="ReadSplitAsync"/>). By default two writes at once.
    /// </summary>
    ValueTask WriteSplitAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> first,
        long secondOffsetBytes,
        ReadOnlyMemory<byte> second,
        CancellationToken cancellationToken = default)
    {
        var a = WriteAsync(offsetBytes, first, cancellationToken);
        ValueTask b;
        try { b = WriteAsync(secondOffsetBytes, second, cancellationToken); }
        catch (Exception e) { b = ValueTask.FromException(e); }
        return DeviceIo.BothAsync(a, b);
    }
}

/// <summary>Two I/Os in flight together (the default split requests, and a disk server's half of one).</summary>
public static class DeviceIo
{
    /// <summary>
    /// Awaits both I/Os, even when one fails, since their buffers are in use until both end; rethrows the first
    /// failure.
    /// </summary>
    public static ValueTask BothAsync(ValueTask first, ValueTask second)
    {
        if (first.IsCompletedSuccessfully && second.IsCompletedSuccessfully) return ValueTask.CompletedTask;
        return SlowAsync(first, second);
    }

    private static async ValueTask SlowAsync(ValueTask first, ValueTask second)
    {
        Exception? error = null;
        try { await first.ConfigureAwait(false); }
        catch (Exception e) { error = e; }
        try { await second.ConfigureAwait(false); }
        catch (Exception e) { error ??= e; }
        if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
    }
}
