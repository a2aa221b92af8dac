using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// Reads of several stripes over members that take vectored I/O (file members): one request per member and
/// contiguous range, every block still verified, anything odd settled by the stripe-by-stripe path.
/// </summary>
public sealed class RunReadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-runread-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// A file member that counts its vectored reads, so a test knows the one-request-per-member path ran.
    /// </summary>
    internal sealed class CountingFileDevice(string path, long capacityBytes) : IVectoredBlockDevice
    {
        private readonly FileBlockDevice _file = new(path, capacityBytes);
        public int ScatterReads;
        public string Name => _file.Name;
        public int SectorSizeBytes => _file.SectorSizeBytes;
        public long CapacityBytes => _file.CapacityBytes;
        public int MaxInFlightIo => _file.MaxInFlightIo;
        public string Path => path;
        public ValueTask ReadAsync(
            long offsetBytes,
            Memory<byte> destination,
            CancellationToken cancellationToken = default)
            => _file.ReadAsync(offsetBytes, destination, cancellationToken);
        public ValueTask WriteAsync(
            long offsetBytes,
            ReadOnlyMemory<byte> source,
            CancellationToken cancellationToken = default)
            => _file.WriteAsync(offsetBytes, source, cancellationToken);
        public ValueTask FlushAsync(CancellationToken cancellationToken = default)
            => _file.FlushAsync(cancellationToken);
        public ValueTask DisposeAsync() => _file.DisposeAsync();

        public ValueTask ReadScatterAsync(
            long offsetBytes,
            IReadOnlyList<Memory<byte>> destinations,
            CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref ScatterReads);
            return _file.ReadScatterAsync(offsetBytes, destinations, cancellationToken);
        }

        public int GatherWrites;

        public ValueTask WriteGatherAsync(
            long offsetBytes,
            IReadOnlyList<ReadOnlyMemory<byte>> sources,
            CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref GatherWrites);
            return _file.WriteGatherAsync(offsetBytes, sources, cancellationToken);
        }
    }

    private async Task<(RaidVolume Volume, CountingFileDevice[] Files, byte[] Model)> FilledAsync(
        RaidLevel level,
        int members,
        int chunk,
        int stripes,
        int seed)
    {
        var files = Enumerable.Range(0, members)
            .Select(
                i => new CountingFileDevice(
                    Path.Combine(_dir, $"{level}-{members}-{chunk}-{i}.img"), MemberBytesFor(chunk, stripes)))
                .ToArray();
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(level, members, chunk), files);
        var model = new byte[volume.CapacityBytes];
        new Random(seed).NextBytes(model);
        await volume.WriteAsync(0, model);
        return (volume, files, model);
    }

    public static TheoryData<RaidLevel, int, int> Levels() => new()
    {
        { RaidLevel.Raid0, 3, 4096 }, { RaidLevel.Raid1, 2, 8192 }, { RaidLevel.Raid5, 5, 16384 },
        { RaidLevel.Raid5, 3, 4096 }, { RaidLevel.Raid6, 6, 8192 },
    };

    [Theory]
    [MemberData(nameof(Levels))]
    public async Task MultiStripeReads_AtAnyAlignment_ReturnWhatWasWritten_WithOneRequestPerMemberRange(
        RaidLevel level,
        int members,
        int chunk)
    {
        var seed = HashCode.Combine(level, members, chunk) & 0xFFFF;
        (RaidVolume volume, CountingFileDevice[] files, var model) = await FilledAsync(
            level, members, chunk, stripes: 24, seed);
        await using (volume)
        {
            var random = new Random(seed);
            var blocks = volume.CapacityBytes / Block;
            var stripeBlocks = volume.Geometry.StripeDataBytes / Block;
            for (var i = 0; i < 40; i++)
            {
                var length = random.Next(stripeBlocks + 1, (int)Math.Min(blocks, 6 * stripeBlocks) + 1);
                var first = random.NextInt64(blocks - length + 1);
                var back = new byte[length * Block];
                await volume.ReadAsync(first * Block, back);
                AssertSame(
                    model.AsSpan((int)(first * Block), back.Length).ToArray(),
                    back,
                    $"seed {seed} read {i}: blocks {first}+{length} of {volume.Geometry}");
            }
            Assert.True(files.Sum(f => f.ScatterReads) > 0, "no member was read with a vectored request");
        }
        foreach (var f in files) await f.DisposeAsync();
    }

    [Fact]
    public async Task CorruptBlock_InAMultiStripeRead_IsCaught_AndTheRightDataReturned()
    {
        (RaidVolume volume, CountingFileDevice[] files, var model) = await FilledAsync(
            RaidLevel.Raid5, 4, 8192, stripes: 16, seed: 77);
        await using (volume)
        {
            // Flip one byte of a data block in the middle of the volume, on the member file itself.
            var victim = volume.CapacityBytes / 2 + 3 * Block + 100;
            ChunkAddress at = volume.Layout.Locate(victim);
            await using (var raw = File.Open(
                files[at.Member].Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
            {
                raw.Position = at.MemberOffsetBytes;
                var b = raw.ReadByte();
                raw.Position = at.MemberOffsetBytes;
                raw.WriteByte((byte)~b);
            }
            var before = files.Sum(f => f.ScatterReads);
            var start = victim / Block * Block - 2L * volume.Geometry.StripeDataBytes;
            var back = new byte[4 * volume.Geometry.StripeDataBytes];
            await volume.ReadAsync(start, back);
            Assert.True(
                files.Sum(f => f.ScatterReads) > before, "the multi-stripe read did not take the vectored path");
            AssertSame(model.AsSpan((int)start, back.Length).ToArray(), back, "a read across a corrupt block");
        }
        foreach (var f in files) await f.DisposeAsync();
    }

    [Fact]
    public async Task DegradedVolume_MultiStripeRead_Reconstructs()
    {
        (RaidVolume volume, CountingFileDevice[] files, var model) = await FilledAsync(
            RaidLevel.Raid6, 5, 4096, stripes: 20, seed: 78);
        await using (volume)
        {
            await volume.FailMemberAsync(1, "test: pulled");
            await volume.FailMemberAsync(3, "test: pulled");
            AssertSame(model, await ReadAllAsync(volume), "RAID-6 with two members failed");
        }
        foreach (var f in files) await f.DisposeAsync();
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 5, 16384)]
    [InlineData(RaidLevel.Raid5, 3, 4096)]
    [InlineData(RaidLevel.Raid6, 6, 8192)]
    public async Task WholeStripeWrites_GoOutAsOneRequestPerMember_AndLeaveParityAndChecksumsRight(
        RaidLevel level,
        int members,
        int chunk)
    {
        var seed = HashCode.Combine(level, members, chunk, 1) & 0xFFFF;
        (RaidVolume volume, CountingFileDevice[] files, var model) = await FilledAsync(
            level, members, chunk, stripes: 40, seed);
        await using (volume)
        {
            var random = new Random(seed);
            var stripeData = volume.Geometry.StripeDataBytes;
            var stripesInVolume = volume.CapacityBytes / stripeData;
            for (var i = 0; i < 12; i++)
            {
                var stripes = random.Next(2, 17);
                var first = random.NextInt64(stripesInVolume - stripes + 1);
                var data = new byte[stripes * stripeData];
                random.NextBytes(data);
                var before = files.Sum(f => f.GatherWrites);
                await volume.WriteAsync(first * stripeData, data, writeTimestamp: 1000 + i, forceUnitAccess: false);
                // One gathered write per member: its chunks and metadata sectors of every stripe lie back to back.
                Assert.Equal(before + members, files.Sum(f => f.GatherWrites));
                data.CopyTo(model, first * stripeData);
            }
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed} {volume.Geometry}");
            ScrubReport report = await volume.ScrubAsync(repair: false);
            Assert.Equal((0L, 0L), (report.ParityMismatches, report.ChecksumErrors));

            // Degraded: a failed member is left out, the others still written, and reads reconstruct it.
            await volume.FailMemberAsync(1, "test: pulled");
            var more = new byte[3 * stripeData];
            random.NextBytes(more);
            await volume.WriteAsync(2L * stripeData, more);
            more.CopyTo(model, 2L * stripeData);
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed} {volume.Geometry}, member 1 failed");
        }
        foreach (var f in files) await f.DisposeAsync();
    }
}
