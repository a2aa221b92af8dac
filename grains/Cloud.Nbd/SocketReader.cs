using System.Net.Sockets;

namespace Cloud.Nbd;

/// <summary>The peer closed the connection before a whole message arrived.</summary>
internal sealed class NbdDisconnectedException(string message) : IOException(message);

/// <summary>
/// Buffered exact reads from a socket. NBD messages are small headers followed by payloads; one receive of
/// <see cref="BufferBytes"/> usually brings several pipelined 4 KiB requests at once, and large payloads bypass the
/// buffer and land straight in the caller's memory. After STARTTLS it reads from the TLS stream instead (see
/// <see cref="UseStream"/>); the plain-text path stays a direct socket receive.
/// </summary>
internal sealed class SocketReader(Socket socket)
{
    /// <summary>The TLS stream after STARTTLS, or null while reading the socket itself.</summary>
    private Stream? _stream;

    /// <summary>Receive buffer size: several pipelined small requests per system call.</summary>
    public const int BufferBytes = 256 << 10;

    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(BufferBytes);
    private int _start;
    private int _end;

    /// <summary>
    /// True after a payload that went straight into the caller's memory: the next message (a request header) is then
    /// received on its own, so that the start of a following large payload is not received into the buffer and copied
    /// out of it again.
    /// </summary>
    private bool _afterDirectPayload;

    /// <summary>Bytes received but not yet read.</summary>
    public int BufferedBytes => _end - _start;

    /// <summary>Reads from <paramref name="stream"/> from now on; nothing may be buffered from the socket.</summary>
    public void UseStream(Stream stream)
    {
        if (BufferedBytes != 0)
        {
            throw new InvalidOperationException("plain-text bytes are still buffered; they cannot be read as TLS");
        }
        _stream = stream;
    }

    private ValueTask<int> ReceiveAsync(Memory<byte> destination, CancellationToken ct)
        => _stream is null
            ? socket.ReceiveAsync(destination, SocketFlags.None, ct)
            : _stream.ReadAsync(destination, ct);

    /// <summary>Bytes received since the connection opened (for logs).</summary>
    public long ReceivedBytes { get; private set; }

    /// <summary>
    /// Fills <paramref name="destination"/> completely, or throws <see cref="NbdDisconnectedException"/> at end of
    /// stream.
    /// </summary>
    public ValueTask ReadExactlyAsync(Memory<byte> destination, CancellationToken ct)
    {
        var buffered = _end - _start;
        if (buffered >= destination.Length)
        {
            // The common case for request headers: already here, no await.
            _buffer.AsSpan(_start, destination.Length).CopyTo(destination.Span);
            _start += destination.Length;
            return ValueTask.CompletedTask;
        }
        return ReadSlowAsync(destination, ct);
    }

    private async ValueTask ReadSlowAsync(Memory<byte> destination, CancellationToken ct)
    {
        var buffered = _end - _start;
        _buffer.AsSpan(_start, buffered).CopyTo(destination.Span);
        _start = _end = 0;
        var filled = buffered;
        while (filled < destination.Length)
        {
            var remaining = destination.Length - filled;
            if (remaining >= _buffer.Length / 2)
            {
                _afterDirectPayload = true;
                // Large payloads go straight into the destination: one copy fewer.
                var n = await ReceiveAsync(destination[filled..], ct).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new NbdDisconnectedException(
                        $"the client closed the connection {remaining} bytes short of a {destination.Length}-byte message");
                }
                ReceivedBytes += n;
                filled += n;
            }
            else
            {
                // A header after a large payload: just what is needed (a sequential writer's next payload follows it).
                var want = _afterDirectPayload ? remaining : _buffer.Length;
                _afterDirectPayload = false;
                var n = await ReceiveAsync(_buffer.AsMemory(0, want), ct).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new NbdDisconnectedException(
                        $"the client closed the connection {remaining} bytes short of a {destination.Length}-byte message");
                }
                ReceivedBytes += n;
                var take = Math.Min(n, remaining);
                _buffer.AsSpan(0, take).CopyTo(destination.Span[filled..]);
                filled += take;
                _start = take;
                _end = n;
            }
        }
    }

    /// <summary>
    /// Reads and drops <paramref name="lengthBytes"/> bytes (a payload the server refuses but must step over).
    /// </summary>
    public async ValueTask SkipAsync(long lengthBytes, CancellationToken ct)
    {
        while (lengthBytes > 0)
        {
            var buffered = _end - _start;
            if (buffered == 0)
            {
                var n = await ReceiveAsync(_buffer.AsMemory(), ct).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new NbdDisconnectedException(
                        $"the client closed the connection {lengthBytes} bytes short of a payload");
                }
                ReceivedBytes += n;
                _start = 0;
                _end = n;
                buffered = n;
            }
            var take = (int)Math.Min(buffered, lengthBytes);
            _start += take;
            lengthBytes -= take;
        }
    }
}
