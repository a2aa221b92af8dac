using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// A small write reads and writes a chunk's rows and its metadata sector, which rows the write leaves out separate. To a
/// member on another host each I/O is a request on both hosts, so the engine asks for both ranges as one split request
/// (<see cref="IVectoredBlockDevice.ReadSplitAsync"/>, <see cref="IVectoredBlockDevice.WriteSplitAsync"/>) where it used
/// to send two; rows that run to the end of the chunk still go with the adjacent metadata sector as one plain I/O.
/// </summary>
public sealed class SplitRequestTests
{
    /// <summary>A vectored member that records each request it is asked for, by kind.</summary>
    private sealed class RecordingDevice(IBlockDevice inner) : IVectoredBlockDevice
    {
        private readonly List<string> _requests = [];

        public string[] TakeRequests()
        {
            lock (_requests)
            {
                var taken = _requests.ToArray();
                _requests.Clear();
                return taken;
            }
        }

        private void Note(string kind)
        {
            lock (_requests) _requests.Add(kind);
        }

        public string Name => inner.Name;

        public int SectorSizeBytes => inner.SectorSizeBytes;

        public long CapacityBytes => inner.CapacityBytes;

        public int MaxInFlightIo => inner.MaxInFlightIo;

        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            Note("read");
            return inner.ReadAsync(offsetBytes, destination, cancellationToken);
        }

        public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            Note("write");
            return inner.WriteAsync(offsetBytes, source, cancellationToken);
        }

        public ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Note("flush");
            return inner.FlushAsync(cancellationToken);
        }

        public async ValueTask ReadScatterAsync(
            long offsetBytes, IReadOnlyList<Memory<byte>> destinations, CancellationToken cancellationToken = default)
        {
            Note("scatter");
            foreach (var d in destinations)
            {
                await inner.ReadAsync(offsetBytes, d, cancellationToken);
                offsetBytes += d.Length;
            }
        }

        public async ValueTask WriteGatherAsync(
            long offsetBytes, IReadOnlyList<ReadOnlyMemory<byte>> sources, CancellationToken cancellationToken = default)
        {
            Note("gather");
            foreach (var s in sources)
            {
                await inner.WriteAsync(offsetBytes, s, cancellationToken);
                offsetBytes += s.Length;
            }
        }

        public async ValueTask ReadSplitAsync(
            long offsetBytes,
            Memory<byte> first,
            long secondOffsetBytes,
            Memory<byte> second,
            CancellationToken cancellationToken = default)
        {
            Note("split read");
            await inner.ReadAsync(offsetBytes, first, cancellationToken);
            await inner.ReadAsync(secondOffsetBytes, second, cancellationToken);
        }

        public async ValueTask WriteSplitAsync(
            long offsetBytes,
            ReadOnlyMemory<byte> first,
            long secondOffsetBytes,
            ReadOnlyMemory<byte> second,
            CancellationToken cancellationToken = default)
        {
            Note("split write");
            await inner.WriteAsync(offsetBytes, first, cancellationToken);
            await inner.WriteAsync(secondOffsetBytes, second, cancellationToken);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private const int Chunk = 16 * 1024;

    private static async Task<(RaidVolume Volume, RecordingDevice[] Members)> CreateAsync()
    {
        var members = Members(5, Chunk, 8).Select(d => new RecordingDevice(d)).ToArray();
        // No write-intent log: its first-touch page writes bring requests of their own.
        var volume = await RaidVolume.CreateAsync(
            Definition(RaidLevel.Raid5, 5, Chunk), members, new RaidVolumeOptions { WriteIntentLog = false });
        return (volume, members);
    }

    private static string Requests(string[][] requests) =>
        string.Join("; ", requests.Select((r, m) => $"m{m}: {string.Join(", ", r)}"));

    [Fact]
    public async Task AForcedSmallWrite_IsOneSplitReadAndOneSplitWritePerMemberItTouches_ThenTheirFlushes()
    {
        var (volume, members) = await CreateAsync();
        await using var _ = volume;
        var layout = volume.Layout;
        await volume.WriteAsync(0, Blocks(4, 1));
        await volume.FlushAsync();
        foreach (var m in members) m.TakeRequests();

        // Block row 1 of data chunk 0: rows 2-3 of the chunk lie between the row and the metadata sector.
        await volume.WriteAsync(4096, Blocks(1, 2), forceUnitAccess: true);

        var requests = members.Select(m => m.TakeRequests()).ToArray();
        int data = layout.DataMember(0, 0), parity = layout.ParityMember(0);
        for (var m = 0; m < members.Length; m++)
        {
            string[] expected = m == data || m == parity ? ["split read", "split write", "flush"] : [];
            Assert.True(
                requests[m].SequenceEqual(expected),
                $"a forced 4 KiB write of member {data} (parity on {parity}) asked: {Requests(requests)}");
        }
        var back = new byte[4 * 4096];
        await volume.ReadAsync(0, back);
        var expectedData = Blocks(4, 1);
        Blocks(1, 2).CopyTo(expectedData, 4096);
        Assert.True(back.AsSpan().SequenceEqual(expectedData), "the write does not read back");
        var scrub = await volume.ScrubAsync(repair: false);
        Assert.True(scrub.ParityMismatches == 0 && scrub.ChecksumErrors == 0, $"scrub after the write: {scrub}");
    }

    [Fact]
    public async Task ASmallWriteOfAChunksLastRow_GoesWithTheAdjacentMetadataSector_AsOnePlainRequest()
    {
        var (volume, members) = await CreateAsync();
        await using var _ = volume;
        var layout = volume.Layout;
        await volume.WriteAsync(0, Blocks(4, 1));
        foreach (var m in members) m.TakeRequests();

        // Block row 3, the chunk's last: its metadata sector follows it on the member.
        await volume.WriteAsync(3 * 4096, Blocks(1, 2));

        var requests = members.Select(m => m.TakeRequests()).ToArray();
        int data = layout.DataMember(0, 0), parity = layout.ParityMember(0);
        for (var m = 0; m < members.Length; m++)
        {
            string[] expected = m == data || m == parity ? ["read", "write"] : [];
            Assert.True(
                requests[m].SequenceEqual(expected),
                $"a 4 KiB write of the last row of member {data}'s chunk (parity on {parity}) asked: {Requests(requests)}");
        }
        var back = new byte[4096];
        await volume.ReadAsync(3 * 4096, back);
        Assert.True(back.AsSpan().SequenceEqual(Blocks(1, 2)), "the write does not read back");
    }

    private static byte[] Blocks(int count, int seed)
    {
        var data = new byte[count * 4096];
        new Random(seed).NextBytes(data);
        return data;
    }
}
