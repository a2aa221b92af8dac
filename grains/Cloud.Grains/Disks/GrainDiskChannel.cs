using Cloud.Storage.Devices;
using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Runtime.Messaging;
using Orleans.Serialization.Buffers;

namespace Cloud.Grains.Disks;

/// <summary>
/// The disk service's transport: one member file of another host, reached by grain calls to that host's
/// <see cref="IHostDiskGrain"/> with immutable payloads. Each write names this silo (address and generation), so that
/// the serving host can fence it. A call that does not reach the host (it is down, declared dead, or cut off) fails
/// with <see cref="MemberUnreachableException"/>, so that the volume marks the member away rather than failed; the
/// host's own report of its disk's error (a <see cref="CloudStorageException"/> or <see cref="CloudRequestException"/>)
/// passes on as it is and fails the member.
/// </summary>
internal sealed class GrainDiskChannel(IHostDiskGrain server, string path, string writer) : IRemoteDiskChannel
{
    public async ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        // Pooled on both sides: a new array per reply (Immutable<byte[]>) of 256 KiB or more lands on the large object
        // heap, and its gen2 collections cost more CPU per byte than the network (docs/CLUSTER.md, "Disks across hosts").
        var data = await Reach(server.ReadPooledAsync(path, offsetBytes, destination.Length).WaitAsync(cancellationToken));
        try
        {
            if (data.Length != destination.Length)
                throw new BlockDeviceException(
                    path, $"the serving host returned {data.Length} bytes for a {destination.Length}-byte read");
            data.CopyTo(destination.Span);
        }
        finally
        {
            data.Dispose();
        }
    }

    public async ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        // One copy into pooled segments, which Orleans' serializer returns to the pool once the request is sent; the
        // service disposes what it receives. So the payload is not disposed here. Not WaitAsync, as before: a write
        // returns only once the host answered.
        var data = new PooledBuffer();
        data.Write(source.Span);
        await Reach(server.WritePooledAsync(path, offsetBytes, source.Length, data, writer));
    }

    public async ValueTask ReadScatterAsync(
        long offsetBytes, IReadOnlyList<Memory<byte>> destinations, int totalBytes, CancellationToken cancellationToken)
    {
        var data = await Reach(server.ReadPooledAsync(path, offsetBytes, totalBytes).WaitAsync(cancellationToken));
        try
        {
            if (data.Length != totalBytes)
                throw new BlockDeviceException(
                    path, $"the serving host returned {data.Length} bytes for a {totalBytes}-byte read");
            var at = 0;
            for (var i = 0; i < destinations.Count; i++)
            {
                data.Slice(at, destinations[i].Length).CopyTo(destinations[i].Span);
                at += destinations[i].Length;
            }
        }
        finally
        {
            data.Dispose();
        }
    }

    public async ValueTask WriteGatherAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, int totalBytes, CancellationToken cancellationToken)
    {
        // Each piece is copied once, into the pooled payload (see WriteAsync).
        var data = new PooledBuffer();
        for (var i = 0; i < sources.Count; i++) data.Write(sources[i].Span);
        await Reach(server.WritePooledAsync(path, offsetBytes, totalBytes, data, writer));
    }

    public async ValueTask WriteGatherDurableAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, int totalBytes, CancellationToken cancellationToken)
    {
        // A write and its flush in one call: a durable volume's member write crossed the network twice.
        var data = new PooledBuffer();
        for (var i = 0; i < sources.Count; i++) data.Write(sources[i].Span);
        await Reach(server.WritePooledDurableAsync(path, offsetBytes, totalBytes, data, writer));
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken) =>
        await Reach(server.FlushAsync(path).WaitAsync(cancellationToken));

    /// <summary>
    /// Passes the serving host's answer on; a call that never got one (no route to the host, its silo dead or
    /// gone, no reply in time) becomes <see cref="MemberUnreachableException"/>.
    /// </summary>
    private async Task Reach(Task call)
    {
        try { await call.ConfigureAwait(false); }
        catch (Exception ex) when (IsUnreachable(ex)) { throw Unreachable(ex); }
    }

    private async Task<T> Reach<T>(Task<T> call)
    {
        try { return await call.ConfigureAwait(false); }
        catch (Exception ex) when (IsUnreachable(ex)) { throw Unreachable(ex); }
    }

    private static bool IsUnreachable(Exception ex) =>
        ex is SiloUnavailableException or SiloNotFoundException or OrleansMessageRejectionException
            or ConnectionFailedException or TimeoutException or ClientNotAvailableException;

    private MemberUnreachableException Unreachable(Exception ex) =>
        new(path, $"its host did not answer: {ex.GetType().Name}: {ex.Message}", ex);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
