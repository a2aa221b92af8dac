using System.Net.Sockets;

namespace Cloud.Nbd;

/// <summary>
/// The socket under a TLS session. TLS reads one record (at most 16 KiB) at a time and writes one record at a time;
/// straight on a <see cref="NetworkStream"/> that is a system call per record, 64 for each 1 MiB payload. This
/// stream receives up to <see cref="ReadBufferBytes"/> per system call and, once <see cref="BufferWrites"/> is on
/// (after the handshake), gathers written records until a flush or until <see cref="WriteBufferBytes"/> are waiting.
/// One reader and one writer may use it at once (the buffers are separate).
/// </summary>
internal sealed class TlsSocketStream(Socket socket) : Stream
{
    /// <summary>Bytes received per system call at most.</summary>
    public const int ReadBufferBytes = 256 << 10;

    /// <summary>Bytes of records gathered before they are sent without waiting for a flush.</summary>
    public const int WriteBufferBytes = 256 << 10;

    private readonly byte[] _read = GC.AllocateUninitializedArray<byte>(ReadBufferBytes);
    private int _readStart;
    private int _readEnd;
    private byte[]? _write;
    private int _writeCount;

    /// <summary>
    /// Whether writes wait in the buffer until <see cref="FlushAsync(CancellationToken)"/>. Off during the handshake,
    /// whose messages the TLS libraries do not always flush.
    /// </summary>
    public bool BufferWrites { get; set; }

    /// <summary>Bytes received and not yet read.</summary>
    public int BufferedReadBytes => _readEnd - _readStart;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken ct = default)
    {
        if (BufferedReadBytes == 0)
        {
            if (destination.Length >= ReadBufferBytes / 2)
            {
                return await socket.ReceiveAsync(destination, SocketFlags.None, ct).ConfigureAwait(false);
            }
            var n = await socket.ReceiveAsync(_read.AsMemory(), SocketFlags.None, ct).ConfigureAwait(false);
            (_readStart, _readEnd) = (0, n);
        }
        return TakeBuffered(destination.Span);
    }

    public override int Read(Span<byte> destination)
    {
        if (BufferedReadBytes == 0)
        {
            if (destination.Length >= ReadBufferBytes / 2)
            {
                return socket.Receive(destination, SocketFlags.None);
            }
            var n = socket.Receive(_read.AsSpan(), SocketFlags.None);
            (_readStart, _readEnd) = (0, n);
        }
        return TakeBuffered(destination);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    private int TakeBuffered(Span<byte> destination)
    {
        var n = Math.Min(destination.Length, BufferedReadBytes);
        _read.AsSpan(_readStart, n).CopyTo(destination);
        _readStart += n;
        return n;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        if (!BufferWrites)
        {
            await SendAsync(source, ct).ConfigureAwait(false);
            return;
        }
        _write ??= GC.AllocateUninitializedArray<byte>(WriteBufferBytes);
        if (_writeCount + source.Length > _write.Length)
        {
            await FlushAsync(ct).ConfigureAwait(false);
        }
        if (source.Length > _write.Length)
        {
            await SendAsync(source, ct).ConfigureAwait(false);
            return;
        }
        source.CopyTo(_write.AsMemory(_writeCount));
        _writeCount += source.Length;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override void Write(ReadOnlySpan<byte> source)
    {
        if (BufferWrites)
        {
            _write ??= GC.AllocateUninitializedArray<byte>(WriteBufferBytes);
            if (_writeCount + source.Length > _write.Length)
            {
                Flush();
            }
            if (source.Length <= _write.Length)
            {
                source.CopyTo(_write.AsSpan(_writeCount));
                _writeCount += source.Length;
                return;
            }
        }
        while (!source.IsEmpty)
        {
            source = source[socket.Send(source, SocketFlags.None)..];
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override async Task FlushAsync(CancellationToken ct)
    {
        if (_writeCount > 0)
        {
            var count = _writeCount;
            _writeCount = 0;
            await SendAsync(_write.AsMemory(0, count), ct).ConfigureAwait(false);
        }
    }

    public override void Flush()
    {
        if (_writeCount > 0)
        {
            var pending = _write.AsSpan(0, _writeCount);
            _writeCount = 0;
            while (!pending.IsEmpty)
            {
                pending = pending[socket.Send(pending, SocketFlags.None)..];
            }
        }
    }

    private async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        while (!data.IsEmpty)
        {
            data = data[await socket.SendAsync(data, SocketFlags.None, ct).ConfigureAwait(false)..];
        }
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
