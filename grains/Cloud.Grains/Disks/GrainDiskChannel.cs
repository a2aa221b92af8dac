using System.Runtime.InteropServices;
using Cloud.Storage.Devices;
using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Runtime.Messaging;

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
        var data = await Reach(server.ReadAsync(path, offsetBytes, destination.Length).WaitAsync(cancellationToken));
        if (data.Value.Length != destination.Length)
            throw new BlockDeviceException(
                path, $"the serving host returned {data.Value.Length} bytes for a {destination.Length}-byte read");
        data.Value.CopyTo(destination);
    }

    public async ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        // An exact array goes as it is; a slice (of a pooled staging buffer, of a larger chunk) is copied once. A
        // ReadOnlyMemory<byte> argument would avoid that copy, but Orleans serializes it 4x slower than an array
        // (docs/CLUSTER.md, "Disks across hosts"). Not WaitAsync: the caller reuses the buffer once this returns.
        var data = MemoryMarshal.TryGetArray(source, out var segment)
            && segment.Offset == 0
            && segment.Count == segment.Array!.Length
                ? segment.Array
                : source.ToArray();
        await Reach(server.WriteAsync(path, offsetBytes, new Immutable<byte[]>(data), writer));
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
