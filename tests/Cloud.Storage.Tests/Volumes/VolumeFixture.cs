using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>Builds small volumes over memory devices, with a byte-array model of what they should hold.</summary>
internal static class VolumeFixture
{
    public const int Block = 4096;

    public static long MemberBytesFor(int chunkBytes, long stripes)
        => OnDiskFormat.DataOffsetBytes + stripes * OnDiskFormat.ChunkStrideBytes(chunkBytes);

    public static MemoryBlockDevice[] Members(int count, int chunkBytes, long stripes, string prefix = "m")
    {
        var devices = new MemoryBlockDevice[count];
        for (var i = 0; i < count; i++)
            devices[i] = new MemoryBlockDevice(MemberBytesFor(chunkBytes, stripes), $"{prefix}{i}");
        return devices;
    }

    public static VolumeDefinition Definition(RaidLevel level, int members, int chunkBytes, string name = "vol") =>
        new(name, Guid.NewGuid(), new VolumeGeometry(level, members, chunkBytes));

    public static async Task<(RaidVolume Volume, MemoryBlockDevice[] Devices)> CreateAsync(RaidLevel level, int members,
        int chunkBytes, long stripes,
        RaidVolumeOptions? options = null)
    {
        MemoryBlockDevice[] devices = Members(members, chunkBytes, stripes);
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(level, members, chunkBytes), devices, options);
        return (volume, devices);
    }

    /// <summary>Writes <paramref name="count"/> random block-aligned extents into the volume and the model.</summary>
    public static async Task RandomWritesAsync(
        IBlockVolume volume,
        byte[] model,
        Random random,
        int count,
        int maxBlocks = 24)
    {
        var blocks = volume.CapacityBytes / Block;
        for (var i = 0; i < count; i++)
        {
            var length = random.Next(1, (int)Math.Min(maxBlocks, blocks) + 1);
            var first = random.NextInt64(blocks - length + 1);
            var data = new byte[length * Block];
            random.NextBytes(data);
            await volume.WriteAsync(first * Block, data);
            data.CopyTo(model, first * Block);
        }
    }

    public static async Task<byte[]> ReadAllAsync(IBlockVolume volume)
    {
        var all = new byte[volume.CapacityBytes];
        var step = Math.Min(volume.MaxIoSizeBytes, 1 << 20);
        for (long pos = 0; pos < all.Length; pos += step)
        {
            var n = (int)Math.Min(step, all.Length - pos);
            await volume.ReadAsync(pos, all.AsMemory((int)pos, n));
        }
        return all;
    }

    /// <summary>Equality of two big arrays with a message naming the first differing offset and the seed.</summary>
    public static void AssertSame(byte[] expected, byte[] actual, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        var i = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(i == expected.Length, $"{context}: first difference at byte {i} (block {i / Block})");
    }
}
