namespace Cloud.Grains.Disks;

/// <summary>
/// Reads a disk stream's frames through a buffer of its own: the headers, paths and small payloads of the requests
/// or replies that arrived together come out of one receive, where reading each piece from the socket took a system
/// call apiece (a 4 KiB write was three on the serving side, a batch of write replies one per reply). A piece at least
/// as large as the buffer, once what is buffered is used, is received straight into the caller's memory.
/// </summary>
internal sealed class FrameReader(Stream stream, int bufferBytes = FrameReader.DefaultBufferBytes)
{
    public const int DefaultBufferBytes = 64 * 1024;

    private readonly byte[] _buffer = new byte[bufferBytes];
    private int _start;
    private int _end;

    /// <summary>Bytes received and not yet read: a request or reply may be waiting here though the socket is empty.</summary>
    public int Buffered => _end - _start;

    /// <summary>Fills <paramref name="destination"/>; throws <see cref="EndOfStreamException"/> if the stream ends first.</summary>
    public void ReadExactly(Span<byte> destination)
    {
        var taken = Math.Min(destination.Length, _end - _start);
        _buffer.AsSpan(_start, taken).CopyTo(destination);
        _start += taken;
        destination = destination[taken..];
        while (destination.Length > 0)
        {
            if (destination.Length >= _buffer.Length)
            {
                stream.ReadExactly(destination);
                return;
            }
            var received = stream.Read(_buffer, 0, _buffer.Length);
            if (received == 0) throw new EndOfStreamException("the disk stream ended inside a frame");
            taken = Math.Min(destination.Length, received);
            _buffer.AsSpan(0, taken).CopyTo(destination);
            (_start, _end) = (taken, received);
            destination = destination[taken..];
        }
    }
}
