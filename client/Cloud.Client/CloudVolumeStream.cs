namespace Cloud.Client;

/// <summary>
/// A seekable stream over a volume. Whole sectors go straight through (the service reads and rewrites a block they
/// cover in part, safely against concurrent writers); a partial sector at either end is read, patched and written
/// back here (so two writers of one sector through streams may race; use sector-aligned I/O then).
/// </summary>
internal sealed class CloudVolumeStream(CloudVolume volume) : Stream
{
    private const int Sector = CloudVolume.SectorSizeBytes;
    private long _position;

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => true;
    public override long Length => volume.SizeBytes;

    public override long Position
    {
        get => _position;
        set => _position = value >= 0 && value <= Length
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, $"position must be in 0-{Length}");
    }

    public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
    {
        SeekOrigin.Begin => offset,
        SeekOrigin.Current => _position + offset,
        SeekOrigin.End => Length + offset,
        _ => throw new ArgumentOutOfRangeException(nameof(origin)),
    };

    public override void SetLength(long value)
        => throw new NotSupportedException("a volume's size is fixed at creation");
    public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();
    public override Task FlushAsync(CancellationToken cancellationToken) => volume.FlushAsync(cancellationToken);
    public override int Read(byte[] buffer, int offset, int count)
        => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override void Write(byte[] buffer, int offset, int count)
        => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var count = (int)Math.Min(buffer.Length, Length - _position);
        if (count <= 0) return 0;
        var start = _position / Sector * Sector;
        var end = (_position + count + Sector - 1) / Sector * Sector;
        if (start == _position && end == _position + count)
        {
            await volume.ReadAsync(start, buffer[..count], cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var aligned = new byte[end - start];
            await volume.ReadAsync(start, aligned, cancellationToken).ConfigureAwait(false);
            aligned.AsMemory((int)(_position - start), count).CopyTo(buffer);
        }
        _position += count;
        return count;
    }

    public override async ValueTask WriteAsync(
        ReadOnlyMemory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        if (_position + buffer.Length > Length)
            throw new IOException(
                $"write of {buffer.Length} bytes at {_position} ends past the volume's {Length} bytes");
        if (buffer.Length == 0) return;
        var start = _position / Sector * Sector;
        var end = (_position + buffer.Length + Sector - 1) / Sector * Sector;
        if (start == _position && end == _position + buffer.Length)
        {
            await volume.WriteAsync(start, buffer, false, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var aligned = new byte[end - start];
            // Only the first and last sectors can be partial; read just those.
            await volume.ReadAsync(start, aligned.AsMemory(0, Sector), cancellationToken).ConfigureAwait(false);
            if (end - Sector > start)
                await volume.ReadAsync(
                    end - Sector,
                    aligned.AsMemory(aligned.Length - Sector, Sector),
                    cancellationToken).ConfigureAwait(false);
            buffer.CopyTo(aligned.AsMemory((int)(_position - start)));
            await volume.WriteAsync(start, aligned, false, cancellationToken).ConfigureAwait(false);
        }
        _position += buffer.Length;
    }
}
