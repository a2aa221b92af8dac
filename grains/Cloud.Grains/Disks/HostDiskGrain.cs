using Orleans.Concurrency;
using Orleans.Placement;
using Orleans.Serialization.Buffers;

namespace Cloud.Grains.Disks;

/// <summary>
/// The disk service's grain on its silo: reentrant, so that many I/Os run at once (the server bounds them), and
/// immovable, because only this host reaches its files. The work is <see cref="DiskServer"/>'s.
/// </summary>
[SiloBoundPlacement, Reentrant, Immovable]
internal sealed class HostDiskGrain(DiskServer server, DiskStreamListener stream) : Grain, IHostDiskGrain
{
    /// <summary>The member's geometry, with this silo's disk stream when it has one.</summary>
    public async Task<ServedDisk?> OpenAsync(string path, long? createSizeBytes)
    {
        var disk = await server.OpenAsync(path, createSizeBytes);
        return disk is not null && stream.Endpoint is { } endpoint
            ? disk with { StreamEndpoint = endpoint, StreamKey = stream.Key }
            : disk;
    }

    public async Task<Immutable<byte[]>> ReadAsync(string path, long offsetBytes, int lengthBytes) =>
        new(await server.ReadAsync(path, offsetBytes, lengthBytes));

    public Task WriteAsync(string path, long offsetBytes, Immutable<byte[]> data, string writer) =>
        server.WriteAsync(path, offsetBytes, data.Value, writer);

    public Task<PooledBuffer> ReadPooledAsync(string path, long offsetBytes, int lengthBytes) =>
        server.ReadPooledAsync(path, offsetBytes, lengthBytes);

    public Task WritePooledAsync(string path, long offsetBytes, int lengthBytes, PooledBuffer data, string writer) =>
        server.WritePooledAsync(path, offsetBytes, lengthBytes, data, writer);

    public Task WritePooledDurableAsync(string path, long offsetBytes, int lengthBytes, PooledBuffer data, string writer) =>
        server.WritePooledAsync(path, offsetBytes, lengthBytes, data, writer, durable: true);

    public Task FlushAsync(string path) => server.FlushAsync(path);

    public Task<string> PlaceAsync(string relativePath, long sizeBytes) =>
        Task.FromResult(server.Place(relativePath, sizeBytes));

    public Task DeleteAsync(string path) => server.DeleteAsync(path);
}
