using System.Runtime.InteropServices;
using Cloud.Storage.Devices;
using Orleans.Concurrency;

namespace Cloud.Grains.Disks;

/// <summary>
/// The disk service's transport: one member file of another host, reached by grain calls to that host's
/// <see cref="IHostDiskGrain"/> with immutable payloads. Each write names this silo (address and generation), so that
/// the serving host can fence it.
/// </summary>
internal sealed class GrainDiskChannel(IHostDiskGrain server, string path, string writer) : IRemoteDiskChannel
{
    public async ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var data = await server.ReadAsync(path, offsetBytes, destination.Length).WaitAsync(cancellationToken);
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
        await server.WriteAsync(path, offsetBytes, new Immutable<byte[]>(data), writer);
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken) =>
        await server.FlushAsync(path).WaitAsync(cancellationToken);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
