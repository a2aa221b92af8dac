using System.Buffers.Binary;
using System.IO.Hashing;
using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.Storage.Tests.Format;

/// <summary>
/// An independent reader written from docs/FORMAT.md alone: it uses none of the engine's layout, format or parity
/// code, only the raw member bytes and the documented rules of tests/Cloud.Testing/DocumentedFormat.cs (header, GF(2^8)),
/// so it fails if the engine and the document part ways. It finds every stripe's data and parity chunks, checks P and Q,
/// checks every block checksum, and reassembles the volume's bytes.
/// </summary>
public sealed class IndependentFormatReaderTests
{
    [Theory]
    [InlineData(RaidLevel.Raid0, 3, 4096)]
    [InlineData(RaidLevel.Raid1, 2, 8192)]
    [InlineData(RaidLevel.Raid5, 4, 16384)]
    [InlineData(RaidLevel.Raid6, 5, 8192)]
    [InlineData(RaidLevel.Raid6, 4, 1 << 20)]
    public async Task RawMembers_ParsedByTheDocumentedRules_MatchTheVolume(RaidLevel level, int members, int chunk)
    {
        const int seed = 501;
        var random = new Random(seed);
        long stripes = chunk == 1 << 20 ? 3 : 9;
        var devices = Enumerable.Range(
            0,
            members).Select(i => new MemoryBlockDevice(
                (1 << 20) + stripes * (chunk + 4096) + 8192, $"raw{i}")).ToArray();
        var definition = new VolumeDefinition("independent", Guid.NewGuid(), new VolumeGeometry(level, members, chunk));
        byte[] model;
        await using (RaidVolume volume = await RaidVolume.CreateAsync(definition, devices))
        {
            model = new byte[volume.CapacityBytes];
            random.NextBytes(model);
            // Leave the last 8 blocks unwritten so that all-zero metadata entries are exercised too.
            await volume.WriteAsync(
                0, model.AsMemory(0, model.Length - 8 * 4096), writeTimestamp: 77, forceUnitAccess: true);
            Array.Clear(model, model.Length - 8 * 4096, 8 * 4096);
        }

        var raw = devices.Select(d => d.Contents.ToArray()).ToArray();
        var h = ReadHeader(raw[0]);
        Assert.Equal(definition.VolumeId, h.VolumeId);
        Assert.Equal("independent", h.Name);
        Assert.Equal(((int)level, members, chunk), (h.Level, h.Members, h.Chunk));
        for (var i = 0; i < members; i++) Assert.Equal(i, ReadHeader(raw[i]).MemberIndex);

        var n = h.Members;
        var parity = h.Level switch { 5 => 1, 6 => 2, _ => 0 };
        var dataPerStripe = h.Level == 1 ? 1 : n - parity;
        var volumeBytes = new byte[h.CapacityBytes];
        for (long s = 0; s < h.Stripes; s++)
        {
            var slot = h.DataOffset + s * h.Stride;
            var p = n - 1 - (int)(s % n);
            var q = (p + 1) % n;
            int DataMember(int i) => h.Level switch { 0 => i, 1 => 0, 5 => (p + 1 + i) % n, _ => (p + 2 + i) % n };
            var data = new byte[dataPerStripe][];
            for (var i = 0; i < dataPerStripe; i++)
            {
                data[i] = raw[DataMember(i)].AsSpan((int)slot, h.Chunk).ToArray();
                data[i].CopyTo(volumeBytes, (s * dataPerStripe + i) * h.Chunk);
            }
            // Checksums of every block of every member's chunk in this stripe.
            for (var m = 0; m < n; m++)
            for (var b = 0; b < h.Chunk / 4096; b++)
            {
                ReadOnlySpan<byte> entry = raw[m].AsSpan((int)(slot + h.Chunk + b * 16), 16);
                var ts = BinaryPrimitives.ReadInt64LittleEndian(entry);
                var sum = BinaryPrimitives.ReadUInt64LittleEndian(entry[8..]);
                if (ts == 0 && sum == 0) continue;
                Assert.Equal(77, ts);
                Assert.True(
                    XxHash3.HashToUInt64(raw[m].AsSpan((int)(slot + b * 4096), 4096)) == sum,
                    $"seed {seed}: stripe {s} member {m} block {b} checksum");
            }
            if (h.Level == 1)
                for (var m = 1; m < n; m++)
                    Assert.True(
                        raw[m].AsSpan((int)slot, h.Chunk).SequenceEqual(data[0]), $"stripe {s}: mirror {m} differs");
            if (parity >= 1)
            {
                byte[] expectP = new byte[h.Chunk], expectQ = new byte[h.Chunk];
                for (var i = 0; i < dataPerStripe; i++)
                {
                    var coefficient = DocumentedFormat.GfPow2(i);
                    for (var x = 0; x < h.Chunk; x++)
                    {
                        expectP[x] ^= data[i][x];
                        expectQ[x] ^= DocumentedFormat.GfMul(coefficient, data[i][x]);
                    }
                }
                Assert.True(
                    raw[p].AsSpan((int)slot, h.Chunk).SequenceEqual(expectP),
                    $"seed {seed}: stripe {s} P on member {p}");
                if (parity == 2)
                    Assert.True(
                        raw[q].AsSpan((int)slot, h.Chunk).SequenceEqual(expectQ),
                        $"seed {seed}: stripe {s} Q on member {q}");
            }
        }
        Assert.True(
            model.AsSpan().SequenceEqual(volumeBytes), $"seed {seed}: reassembled bytes differ from what was written");
    }

    /// <summary>
    /// The partial-parity area, read by docs/FORMAT.md's rules alone: after a one-block write into a stripe, the P and Q
    /// members' rings of writer slot 0 hold entries whose rows are the P and Q of the blocks the write left untouched.
    /// </summary>
    [Fact]
    public async Task PartialParityEntries_ParsedByTheDocumentedRules_HoldTheUntouchedRowsParity()
    {
        const int chunk = 8192, members = 5, stripes = 4;
        var devices = Enumerable.Range(0, members).Select(i => new MemoryBlockDevice(
            (1 << 20) + stripes * (chunk + 4096) + 64 * 262144, $"ppl{i}")).ToArray();
        var definition = new VolumeDefinition("ppl", Guid.NewGuid(), new VolumeGeometry(RaidLevel.Raid6, members, chunk));
        var random = new Random(77);
        var block = new byte[4096];
        random.NextBytes(block);
        await using (RaidVolume volume = await RaidVolume.CreateAsync(
            definition, devices, new RaidVolumeOptions { PartialParityLog = true }))
        {
            var all = new byte[volume.CapacityBytes];
            random.NextBytes(all);
            await volume.WriteAsync(0, all, writeTimestamp: 77, forceUnitAccess: false);
            // Stripe 2, data chunk 1, its second block (row 1).
            await volume.WriteAsync(2 * 3 * chunk + chunk + 4096, block, writeTimestamp: 78, forceUnitAccess: false);
        }
        var raw = devices.Select(d => d.Contents.ToArray()).ToArray();
        var h = ReadHeader(raw[0]);
        var slotBytes = BinaryPrimitives.ReadInt64LittleEndian(raw[0].AsSpan(2464));
        var area = BinaryPrimitives.ReadInt64LittleEndian(raw[0].AsSpan(2472));
        Assert.Equal(Math.Max(262144, 4 * (chunk + 8192)), slotBytes);
        Assert.Equal(h.DataOffset + h.Stripes * h.Stride, area);

        const int s = 2;
        var p = members - 1 - s % members;
        var q = (p + 1) % members;
        for (var kind = 0; kind < 2; kind++)
        {
            ReadOnlySpan<byte> e = raw[kind == 0 ? p : q].AsSpan((int)area, (int)slotBytes);
            Assert.True(e[..8].SequenceEqual("CLDPPL01"u8), $"kind {kind}: no entry at the ring's start");
            Assert.Equal(XxHash3.HashToUInt64(e[..4088]), BinaryPrimitives.ReadUInt64LittleEndian(e[4088..]));
            Assert.Equal(definition.VolumeId, new Guid(e.Slice(8, 16)));
            Assert.Equal((0, kind, s, 78L), (BinaryPrimitives.ReadInt32LittleEndian(e[24..]),
                BinaryPrimitives.ReadInt32LittleEndian(e[28..]), BinaryPrimitives.ReadInt64LittleEndian(e[32..]),
                BinaryPrimitives.ReadInt64LittleEndian(e[40..])));
            int row0 = BinaryPrimitives.ReadInt32LittleEndian(e[48..]), row1 = BinaryPrimitives.ReadInt32LittleEndian(e[52..]);
            Assert.Equal((1, 2, 3), (row0, row1, BinaryPrimitives.ReadInt32LittleEndian(e[56..])));
            // Only data chunk 1 changed, row 1.
            for (var i = 0; i < 3; i++)
                Assert.Equal(i == 1 ? (1, 2) : (0, 0), (BinaryPrimitives.ReadInt32LittleEndian(e[(72 + 8 * i)..]),
                    BinaryPrimitives.ReadInt32LittleEndian(e[(76 + 8 * i)..])));
            // One row, then its 24-byte guard padded to 4096: the parity row's stamp and checksum before the write,
            // and its checksum after.
            ReadOnlySpan<byte> rows = e.Slice(4096, 4096);
            Assert.Equal(XxHash3.HashToUInt64(e.Slice(4096, 8192)), BinaryPrimitives.ReadUInt64LittleEndian(e[64..]));
            var parityMember = raw[kind == 0 ? p : q];
            var parityRow = parityMember.AsSpan((int)(h.DataOffset + s * h.Stride + 4096), 4096);
            ReadOnlySpan<byte> guard = e.Slice(8192, 24);
            Assert.Equal(77, BinaryPrimitives.ReadInt64LittleEndian(guard));
            Assert.Equal(XxHash3.HashToUInt64(parityRow), BinaryPrimitives.ReadUInt64LittleEndian(guard[16..]));
            Assert.Equal(78, BinaryPrimitives.ReadInt64LittleEndian(
                parityMember.AsSpan((int)(h.DataOffset + s * h.Stride + h.Chunk + 16))));
            var expected = new byte[4096];
            for (var i = 0; i < 3; i++)
            {
                if (i == 1) continue;
                var member = (p + 2 + i) % members;
                var coefficient = kind == 0 ? (byte)1 : DocumentedFormat.GfPow2(i);
                ReadOnlySpan<byte> data = raw[member].AsSpan((int)(h.DataOffset + s * h.Stride + 4096), 4096);
                for (var x = 0; x < 4096; x++) expected[x] ^= DocumentedFormat.GfMul(coefficient, data[x]);
            }
            Assert.True(rows.SequenceEqual(expected), $"kind {kind}: the entry's row is not the untouched blocks' parity");
        }
    }

    /// <summary>The documented header of a member, which must have a valid copy.</summary>
    private static DocumentedFormat.Header ReadHeader(byte[] member)
        => DocumentedFormat.ReadHeader(member) ?? throw new Xunit.Sdk.XunitException("no valid superblock copy");
}
