using System.Text;
using Cloud.Storage.Devices;

namespace Cloud.Grains.Disks;

/// <summary>
/// The disk service's stream transport for one member file of another host: its reads, writes and flushes go over
/// this silo's <see cref="DiskStreamClient"/> connection to the serving silo (docs/CLUSTER.md, "Disks across hosts").
/// The member was opened, and the stream's endpoint and key learnt, through the serving silo's disk grain.
/// </summary>
/// <remarks>
/// As with <see cref="GrainDiskChannel"/>, a request that never got an answer (the host cannot be reached, closed the
/// connection or stopped answering) fails with <see cref="MemberUnreachableException"/>, so that the volume marks the
/// member away rather than failed, and the host's own report of its disk's error passes on as it is. A request after a
/// broken connection connects again; a host that restarted has a new endpoint and key, so its members are opened
/// again through its disk grain when the volume reassembles.
/// </remarks>
internal sealed class StreamDiskChannel(DiskStreamClient client, string endpoint, byte[] key, string writer, string path)
    : IRemoteDiskChannel
{
    private readonly byte[] _path = Encoding.UTF8.GetBytes(path);

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken) =>
        ReadScatterAsync(offsetBytes, [destination], destination.Length, cancellationToken);

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken) =>
        WriteGatherAsync(offsetBytes, [source], source.Length, cancellationToken);

    public async ValueTask ReadScatterAsync(
        long offsetBytes, IReadOnlyList<Memory<byte>> destinations, int totalBytes, CancellationToken cancellationToken)
    {
        // Once sent, a read is not abandoned on cancellation: its reply is received into these buffers.
        cancellationToken.ThrowIfCancellationRequested();
        var connection = await ConnectAsync().ConfigureAwait(false);
        await Reach(connection.ReadAsync(_path, offsetBytes, destinations, totalBytes)).ConfigureAwait(false);
    }

    public async ValueTask WriteGatherAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, int totalBytes, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync().ConfigureAwait(false);
        await Reach(connection.WriteAsync(_path, offsetBytes, sources, totalBytes, durable: false)).ConfigureAwait(false);
    }

    public async ValueTask WriteGatherDurableAsync(
        long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, int totalBytes, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync().ConfigureAwait(false);
        await Reach(connection.WriteAsync(_path, offsetBytes, sources, totalBytes, durable: true)).ConfigureAwait(false);
    }

    public async ValueTask ReadSplitAsync(
        long offsetBytes, Memory<byte> first, long secondOffsetBytes, Memory<byte> second, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var connection = await ConnectAsync().ConfigureAwait(false);
        await Reach(connection.ReadSplitAsync(_path, offsetBytes, first, secondOffsetBytes, second)).ConfigureAwait(false);
    }

    public async ValueTask WriteSplitAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> first,
        long secondOffsetBytes,
        ReadOnlyMemory<byte> second,
        CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync().ConfigureAwait(false);
        await Reach(connection.WriteSplitAsync(_path, offsetBytes, first, secondOffsetBytes, second)).ConfigureAwait(false);
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var connection = await ConnectAsync().ConfigureAwait(false);
        await Reach(connection.FlushAsync(_path)).ConfigureAwait(false);
    }

    private async ValueTask<DiskStreamConnection> ConnectAsync()
    {
        var connecting = client.GetAsync(endpoint, key, writer);
        if (connecting.IsCompletedSuccessfully) return connecting.Result;
        try
        {
            return await connecting.ConfigureAwait(false);
        }
        catch (DiskStreamBrokenException ex)
        {
            throw Unreachable(ex);
        }
    }

    private async Task Reach(Task request)
    {
        try
        {
            await request.ConfigureAwait(false);
        }
        catch (DiskStreamBrokenException ex)
        {
            throw Unreachable(ex);
        }
    }

    private MemberUnreachableException Unreachable(Exception ex) =>
        new(path, $"its host did not answer: {ex.Message}", ex);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
