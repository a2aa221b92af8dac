using System.Buffers.Binary;
using System.IO.Hashing;

namespace Cloud.Testing;

/// <summary>
/// The member format read from docs/FORMAT.md alone, with none of the engine's layout, format or parity code: the
/// superblock header, and each stripe's P and Q checked with its own GF(2^8) arithmetic. An outside tool's view, for
/// tests that look at the member files a cluster left on disk.
/// </summary>
public static class DocumentedFormat
{
    /// <summary>A member's superblock header (the valid copy with the higher generation).</summary>
    public sealed record Header(
        Guid VolumeId,
        string Name,
        int MemberIndex,
        int Members,
        int Level,
        int Chunk,
        long DataOffset,
        long Stride,
        long Stripes,
        long CapacityBytes,
        long Generation);

    /// <summary>
    /// FORMAT.md: two 4096-byte copies at 0 and 4096; valid = magic + XxHash3 of bytes 0..4087 at 4088; the higher
    /// generation wins. Null when neither copy is valid.
    /// </summary>
    public static Header? ReadHeader(ReadOnlySpan<byte> member)
    {
        Header? best = null;
        for (var copy = 0; copy < 2 && member.Length >= (copy + 1) * 4096; copy++)
        {
            var b = member.Slice(copy * 4096, 4096);
            if (!b[..8].SequenceEqual("CLDVOL01"u8)) continue;
            if (XxHash3.HashToUInt64(b[..4088]) != BinaryPrimitives.ReadUInt64LittleEndian(b[4088..])) continue;
            var h = new Header(
                new Guid(b.Slice(16, 16)),
                System.Text.Encoding.UTF8.GetString(b.Slice(156, BinaryPrimitives.ReadInt32LittleEndian(b[152..]))),
                BinaryPrimitives.ReadInt32LittleEndian(b[48..]),
                BinaryPrimitives.ReadInt32LittleEndian(b[52..]),
                BinaryPrimitives.ReadInt32LittleEndian(b[56..]),
                BinaryPrimitives.ReadInt32LittleEndian(b[60..]),
                BinaryPrimitives.ReadInt64LittleEndian(b[72..]),
                BinaryPrimitives.ReadInt64LittleEndian(b[80..]),
                BinaryPrimitives.ReadInt64LittleEndian(b[88..]),
                BinaryPrimitives.ReadInt64LittleEndian(b[96..]),
                BinaryPrimitives.ReadInt64LittleEndian(b[104..]));
            if (best is null || h.Generation > best.Generation) best = h;
        }
        return best;
    }

    /// <summary>
    /// Checks a RAID-5 or RAID-6 volume's members (raw bytes, in member index order): every header names the same
    /// volume and its own index, and every stripe's P (and Q) is what the documented rules compute from its data
    /// chunks. Returns each problem found, at most <paramref name="maxProblems"/>; empty when the members agree.
    /// </summary>
    public static IReadOnlyList<string> CheckParity(IReadOnlyList<byte[]> members, int maxProblems = 20)
    {
        var problems = new List<string>();
        var headers = members.Select(m => ReadHeader(m)).ToArray();
        if (headers[0] is not { } h) return ["member 0 has no valid superblock"];
        for (var i = 0; i < members.Count; i++)
        {
            if (headers[i] is not { } mine) problems.Add($"member {i} has no valid superblock");
            else if (mine.VolumeId != h.VolumeId || mine.MemberIndex != i)
                problems.Add($"member {i}'s superblock names volume {mine.VolumeId} member {mine.MemberIndex}");
        }
        var n = h.Members;
        var parity = h.Level switch { 5 => 1, 6 => 2, _ => throw new ArgumentException($"level {h.Level} has no parity") };
        var dataPerStripe = n - parity;
        for (long s = 0; s < h.Stripes && problems.Count < maxProblems; s++)
        {
            var slot = (int)(h.DataOffset + s * h.Stride);
            var p = n - 1 - (int)(s % n);
            var q = (p + 1) % n;
            byte[] expectP = new byte[h.Chunk], expectQ = new byte[h.Chunk];
            for (var i = 0; i < dataPerStripe; i++)
            {
                var data = members[h.Level == 5 ? (p + 1 + i) % n : (p + 2 + i) % n].AsSpan(slot, h.Chunk);
                var coefficient = GfPow2(i);
                for (var x = 0; x < h.Chunk; x++)
                {
                    expectP[x] ^= data[x];
                    expectQ[x] ^= GfMul(coefficient, data[x]);
                }
            }
            if (!members[p].AsSpan(slot, h.Chunk).SequenceEqual(expectP)) problems.Add($"stripe {s}: P on member {p}");
            if (parity == 2 && !members[q].AsSpan(slot, h.Chunk).SequenceEqual(expectQ))
                problems.Add($"stripe {s}: Q on member {q}");
        }
        return problems;
    }

    /// <summary>
    /// Multiplication in GF(2^8) modulo x^8+x^4+x^3+x^2+1 by shift and add, independent of the engine's tables.
    /// </summary>
    public static byte GfMul(byte a, byte b)
    {
        int product = 0, x = a;
        for (var bit = 0; bit < 8; bit++)
        {
            if ((b & (1 << bit)) != 0) product ^= x;
            x <<= 1;
            if ((x & 0x100) != 0) x ^= 0x11D;
        }
        return (byte)product;
    }

    /// <summary>2 to the power <paramref name="power"/> in GF(2^8).</summary>
    public static byte GfPow2(int power)
    {
        byte r = 1;
        for (var i = 0; i < power; i++) r = GfMul(r, 2);
        return r;
    }
}
