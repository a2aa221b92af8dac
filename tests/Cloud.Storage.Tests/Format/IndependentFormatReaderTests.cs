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

    /// <summary>The documented header of a member, which must have a valid copy.</summary>
    private static DocumentedFormat.Header ReadHeader(byte[] member)
        => DocumentedFormat.ReadHeader(member) ?? throw new Xunit.Sdk.XunitException("no valid superblock copy");
}
