using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Cloud.Storage.Devices;

namespace Cloud.Bench.DiskTransport;

/// <summary>
/// The alternative transport measured against grain calls: one TCP connection per host pair carrying a small framed
/// protocol (request: id, op, offset, length, payload; reply: id, status, payload), many requests in flight on it.
/// Only as much as the measurement needs: no fencing, no reconnects, no TLS.
/// </summary>
internal static class TcpFrames
{
    public const int HeaderBytes = 4 + 1 + 8 + 4;
    public const byte Read = 1;
    public const byte Write = 2;
}

/// <summary>The serving side: one file, every request run as it arrives, replies written under a lock.</summary>
internal sealed class TcpDiskServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IBlockDevice _device;
    private readonly CancellationTokenSource _stop = new();
    private Task? _accept;

    public TcpDiskServer(IBlockDevice device)
    {
        _device = device;
        _listener.Start();
        _accept = AcceptAsync();
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (OperationCanceledException) { return; }
            socket.NoDelay = true;
            _ = ServeAsync(new NetworkStream(socket, ownsSocket: true));
        }
    }

    private async Task ServeAsync(NetworkStream stream)
    {
        var sendLock = new SemaphoreSlim(1, 1);
        var header = new byte[TcpFrames.HeaderBytes];
        try
        {
            while (true)
            {
                await stream.ReadExactlyAsync(header, _stop.Token);
                var id = BinaryPrimitives.ReadInt32LittleEndian(header);
                var op = header[4];
                var offset = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(5));
                var length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(13));
                var buffer = ArrayPool<byte>.Shared.Rent(length);
                if (op == TcpFrames.Write) await stream.ReadExactlyAsync(buffer.AsMemory(0, length), _stop.Token);
                _ = RunAsync(stream, sendLock, id, op, offset, buffer, length);
            }
        }
        catch (Exception ex) when (ex is EndOfStreamException or IOException or OperationCanceledException)
        {
            await stream.DisposeAsync();
        }
    }

    private async Task RunAsync(NetworkStream stream, SemaphoreSlim sendLock, int id, byte op, long offset, byte[] buffer, int length)
    {
        var reply = new byte[5];
        BinaryPrimitives.WriteInt32LittleEndian(reply, id);
        try
        {
            if (op == TcpFrames.Read) await _device.ReadAsync(offset, buffer.AsMemory(0, length));
            else await _device.WriteAsync(offset, buffer.AsMemory(0, length));
        }
        catch (Exception)
        {
            reply[4] = 1;
        }
        await sendLock.WaitAsync();
        try
        {
            await stream.WriteAsync(reply);
            if (op == TcpFrames.Read && reply[4] == 0) await stream.WriteAsync(buffer.AsMemory(0, length));
        }
        finally
        {
            sendLock.Release();
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        if (_accept is not null) await _accept;
    }
}

/// <summary>The calling side: one connection, requests multiplexed by id, one reader completing them.</summary>
internal sealed class TcpDiskChannel : IRemoteDiskChannel
{
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<int, (TaskCompletionSource Done, Memory<byte> Into)> _pending = new();
    private readonly Task _reader;
    private int _nextId;

    public TcpDiskChannel(IPEndPoint server)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(server);
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = ReadRepliesAsync();
    }

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken) =>
        SendAsync(TcpFrames.Read, offsetBytes, destination, default);

    public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken) =>
        SendAsync(TcpFrames.Write, offsetBytes, default, source);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    private async ValueTask SendAsync(byte op, long offset, Memory<byte> into, ReadOnlyMemory<byte> payload)
    {
        var id = Interlocked.Increment(ref _nextId);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = (done, into);
        var header = new byte[TcpFrames.HeaderBytes];
        BinaryPrimitives.WriteInt32LittleEndian(header, id);
        header[4] = op;
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(5), offset);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(13), op == TcpFrames.Read ? into.Length : payload.Length);
        await _sendLock.WaitAsync();
        try
        {
            await _stream.WriteAsync(header);
            if (op == TcpFrames.Write) await _stream.WriteAsync(payload);
        }
        finally
        {
            _sendLock.Release();
        }
        await done.Task;
    }

    private async Task ReadRepliesAsync()
    {
        var reply = new byte[5];
        try
        {
            while (true)
            {
                await _stream.ReadExactlyAsync(reply);
                var id = BinaryPrimitives.ReadInt32LittleEndian(reply);
                _pending.TryRemove(id, out var request);
                if (reply[4] != 0)
                {
                    request.Done.SetException(new IOException("remote I/O failed"));
                    continue;
                }
                if (request.Into.Length > 0) await _stream.ReadExactlyAsync(request.Into);
                request.Done.SetResult();
            }
        }
        catch (Exception ex) when (ex is EndOfStreamException or IOException or ObjectDisposedException)
        {
            foreach (var p in _pending.Values) p.Done.TrySetException(ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        try { await _reader; } catch (Exception) { }
    }
}
