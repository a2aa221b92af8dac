using Cloud.Storage.Volumes;
using static Cloud.Nbd.NbdProtocol;

namespace Cloud.Nbd.Tests;

/// <summary>
/// Writes to a volume that takes over the write's buffer (<see cref="IBufferOwningVolume"/>): the server must hand
/// it an array of exactly the payload, never touch that array again, and still split, check and refuse as usual.
/// </summary>
public sealed class OwnedWriteTests
{
    private const long SizeBytes = 8L << 20;

    /// <summary>Keeps every array it is given, as a volume that holds its copies until they commit would.</summary>
    private sealed class KeepingVolume(MemoryVolume inner) : IBufferOwningVolume
    {
        private readonly List<(long Offset, byte[] Data, byte[] AsReceived)> _kept = [];

        public IReadOnlyList<(long Offset, byte[] Data, byte[] AsReceived)> Kept
        {
            get { lock (_kept) return [.. _kept]; }
        }
        public int OwnedWrites { get { lock (_kept) return _kept.Count; } }
        public string Name => inner.Name;
        public long CapacityBytes => inner.CapacityBytes;
        public int BlockSizeBytes => inner.BlockSizeBytes;
        public int PreferredIoSizeBytes => inner.PreferredIoSizeBytes;
        public int MaxIoSizeBytes => inner.MaxIoSizeBytes;

        public async ValueTask WriteOwnedAsync(
            long offsetBytes,
            byte[] data,
            bool forceUnitAccess = false,
            CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(offsetBytes, data, forceUnitAccess, cancellationToken);
            lock (_kept) _kept.Add((offsetBytes, data, (byte[])data.Clone()));
        }

        public ValueTask ReadAsync(
            long offsetBytes,
            Memory<byte> destination,
            CancellationToken cancellationToken = default)
            => inner.ReadAsync(offsetBytes, destination, cancellationToken);
        public ValueTask WriteAsync(
            long offsetBytes,
            ReadOnlyMemory<byte> source,
            bool forceUnitAccess = false,
            CancellationToken cancellationToken = default)
            => inner.WriteAsync(offsetBytes, source, forceUnitAccess, cancellationToken);
        public ValueTask FlushAsync(CancellationToken cancellationToken = default)
            => inner.FlushAsync(cancellationToken);
        public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken = default)
            => inner.TrimAsync(offsetBytes, lengthBytes, cancellationToken);
    }

    [Fact]
    public async Task PipelinedWrites_EachGetAnArrayOfTheirOwn_ThatTheServerNeverReuses()
    {
        var inner = new MemoryVolume("v1", SizeBytes);
        var volume = new KeepingVolume(inner);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        var sizes = new[] { 4096, 1 << 20, 64 << 10, 4096, 256 << 10, 1 << 20, 8192, 4096 };
        var payloads = sizes.Select((size, i) => Blocks.Pattern(size, i)).ToArray();
        // Pipelined: every request is on the wire before the first reply is read.
        long offset = 0;
        var offsets = new long[sizes.Length];
        for (var i = 0; i < sizes.Length; i++)
        {
            offsets[i] = offset;
            await client.SendRequestAsync(CmdWrite, (ulong)i, (ulong)offset, (uint)sizes[i], payload: payloads[i]);
            offset += sizes[i];
        }
        for (var i = 0; i < sizes.Length; i++)
        {
            Assert.Equal(0u, (await client.ReadReplyAsync()).Error);
        }

        Assert.Equal(sizes.Length, volume.OwnedWrites);
        Assert.Equal(0, inner.Writes - volume.OwnedWrites);
        foreach (var (keptOffset, data, asReceived) in volume.Kept)
        {
            var i = Array.IndexOf(offsets, keptOffset);
            Assert.Equal(sizes[i], data.Length);
            Assert.Equal(payloads[i], asReceived);
            // Still intact after every later request went through the server: the array was given away, not lent.
            Assert.Equal(payloads[i], data);
        }
        Assert.Equal(payloads.SelectMany(p => p).ToArray(), inner.Snapshot().AsSpan(0, (int)offset).ToArray());
        Assert.Equal(
            sizes.Length, volume.Kept.Select(k => k.Data).Distinct(ReferenceEqualityComparer.Instance).Count());
    }

    [Fact]
    public async Task WritesLargerThanOnePiece_AndBadWrites_TakeTheUsualPath()
    {
        var inner = new MemoryVolume("v1", SizeBytes, maxIoSizeBytes: 64 << 10);
        var volume = new KeepingVolume(inner);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");

        // 1 MiB against a 64 KiB volume maximum: split into pieces through WriteAsync, none owned.
        var big = Blocks.Pattern(1 << 20, 7);
        Assert.Equal(0u, (await client.CommandAsync(CmdWrite, 1, 0, (uint)big.Length, payload: big)).Error);
        Assert.Equal(0, volume.OwnedWrites);
        Assert.Equal(16, inner.Writes);

        // Past the end: refused with ENOSPC by the same checks, the volume untouched.
        var before = inner.Snapshot();
        Assert.Equal(
            ENoSpc,
            (await client.CommandAsync(CmdWrite, 2, (ulong)SizeBytes - 4096, 8192, payload: new byte[8192])).Error);
        Assert.Equal(EInval, (await client.CommandAsync(CmdWrite, 3, 100, 4096, payload: new byte[4096])).Error);
        Assert.Equal(before, inner.Snapshot());

        // A small write still goes the owned way, and the connection is in step.
        var small = Blocks.Pattern(4096, 8);
        Assert.Equal(0u, (await client.CommandAsync(CmdWrite, 4, 8192, 4096, payload: small)).Error);
        Assert.Equal(1, volume.OwnedWrites);
        Assert.Equal(small, (await client.ReadBlockAsync(5, 8192, 4096)).Data);
    }
}
