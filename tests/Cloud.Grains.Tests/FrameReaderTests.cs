using Cloud.Grains.Disks;

namespace Cloud.Grains.Tests;

/// <summary>
/// The disk stream's reader: frames that arrived together come out of one receive, a frame split across receives is
/// put together, a large one goes straight into the caller's memory, and a stream that ends inside a frame is an error.
/// </summary>
public sealed class FrameReaderTests
{
    /// <summary>A stream that hands out at most <paramref name="chunk"/> bytes per read and counts the reads.</summary>
    private sealed class ChunkedStream(byte[] data, int chunk) : Stream
    {
        private int _at;

        public int Reads { get; private set; }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            Reads++;
            var n = Math.Min(Math.Min(buffer.Length, chunk), data.Length - _at);
            data.AsSpan(_at, n).CopyTo(buffer);
            _at += n;
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private static byte[] Bytes(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public void SmallFramesThatArrivedTogether_TakeOneReceive()
    {
        var frames = Enumerable.Range(0, 20).Select(i => Bytes(16 + i, i)).ToArray();
        var stream = new ChunkedStream([.. frames.SelectMany(f => f)], chunk: 1 << 20);
        var reader = new FrameReader(stream);
        foreach (var frame in frames)
        {
            var got = new byte[frame.Length];
            reader.ReadExactly(got);
            Assert.Equal(frame, got);
        }
        Assert.Equal(1, stream.Reads);
        Assert.Equal(0, reader.Buffered);
    }

    [Fact]
    public void FramesSplitAcrossReceives_AndLargerThanTheBuffer_ComeOutWhole()
    {
        // A small buffer and a stream that gives 7 bytes at a time: every frame straddles receives, the large one
        // goes past the buffer.
        var frames = new[] { Bytes(5, 1), Bytes(100, 2), Bytes(3, 3), Bytes(1000, 4), Bytes(64, 5) };
        var stream = new ChunkedStream([.. frames.SelectMany(f => f)], chunk: 7);
        var reader = new FrameReader(stream, bufferBytes: 64);
        foreach (var frame in frames)
        {
            var got = new byte[frame.Length];
            reader.ReadExactly(got);
            Assert.Equal(frame, got);
        }
        Assert.Equal(0, reader.Buffered);
    }

    [Fact]
    public void AStreamEndingInsideAFrame_Throws_AndWhatIsBufferedIsCounted()
    {
        var reader = new FrameReader(new ChunkedStream(Bytes(40, 6), chunk: 1 << 20));
        reader.ReadExactly(new byte[10]);
        Assert.Equal(30, reader.Buffered);
        Assert.Throws<EndOfStreamException>(() => reader.ReadExactly(new byte[50]));
    }
}
