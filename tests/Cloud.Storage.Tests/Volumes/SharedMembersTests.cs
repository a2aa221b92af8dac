using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// The cluster's pattern in one process: two openers of the same member files, each through its own
/// file handles and writer slot, write different stripes at the same time. Because metadata and
/// intent bitmaps are never shared between stripes or writers, neither clobbers the other.
/// </summary>
public sealed class SharedMembersTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-shared-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private IBlockDevice[] Open(long capacityBytes = 0) =>
        Enumerable.Range(
            0,
            4).Select(i => (IBlockDevice)new FileBlockDevice(Path.Combine(_dir, $"d{i}.img"), capacityBytes)).ToArray();

    [Fact]
    public async Task TwoOpeners_WritingDifferentStripes_Concurrently_LeaveAConsistentVolume()
    {
        const int seed = 701;
        const int chunk = 8192;
        const long stripes = 32;
        IBlockDevice[] created = Open(MemberBytesFor(chunk, stripes));
        long capacity;
        await using (RaidVolume v = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid6, 4, chunk), created))
            capacity = v.CapacityBytes;

        IBlockDevice[] handlesA = Open(), handlesB = Open();
        var a = await RaidVolume.AssembleAsync(
            handlesA, new RaidVolumeOptions { WriterSlot = 1, RecoverAllWriterSlots = false });
        var b = await RaidVolume.AssembleAsync(
            handlesB, new RaidVolumeOptions { WriterSlot = 2, RecoverAllWriterSlots = false });
        var model = new byte[capacity];
        new Random(seed).NextBytes(model);
        var stripeBytes = a.Geometry.StripeDataBytes;

        async Task WriteStripes(RaidVolume volume, int parity)
        {
            // Partial-stripe writes (block by block) so every one of them is a read-modify-write of shared-looking
            // structures.
            for (long s = parity; s < stripes; s += 2)
                for (var off = 0; off < stripeBytes; off += Block)
                    await volume.WriteAsync(s * stripeBytes + off, model.AsMemory((int)(s * stripeBytes + off), Block));
        }
        await Task.WhenAll(Task.Run(() => WriteStripes(a, 0)), Task.Run(() => WriteStripes(b, 1)));
        await a.DisposeAsync();
        await b.DisposeAsync();

        IBlockDevice[] handlesC = Open();
        await using (RaidVolume c = await RaidVolume.AssembleAsync(handlesC))
        {
            AssertSame(model, await ReadAllAsync(c), $"seed {seed}");
            ScrubReport report = await c.ScrubAsync(repair: false);
            Assert.Equal(0, report.ParityMismatches + report.ChecksumErrors);
        }
        foreach (IBlockDevice d in created.Concat(handlesA).Concat(handlesB).Concat(handlesC)) await d.DisposeAsync();
    }

    /// <summary>
    /// What one opener wrote and did not flush (a silo killed before its flush) is made durable by another opener's
    /// flush of every member, while its plain flush leaves it: that one flushes only the members it wrote itself.
    /// </summary>
    [Fact]
    public async Task FlushEveryMember_OfAnotherOpener_MakesTheFirstOpenersWritesDurable()
    {
        const int chunk = 8192;
        const long stripes = 32;
        IBlockDevice[] created = Open(MemberBytesFor(chunk, stripes));
        await (await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 4, chunk), created)).DisposeAsync();
        IBlockDevice[] handlesA = Open(), handlesB = Open();
        var a = await RaidVolume.AssembleAsync(handlesA, new RaidVolumeOptions { WriterSlot = 1, RecoverAllWriterSlots = false });
        var b = await RaidVolume.AssembleAsync(handlesB, new RaidVolumeOptions { WriterSlot = 2, RecoverAllWriterSlots = false });
        var members = Enumerable.Range(0, 4).Select(i => Path.Combine(_dir, $"d{i}.img")).ToArray();
        long DirtyData() => members.Sum(m =>
        {
            var state = Cloud.Testing.PageCache.Of(m, Cloud.Storage.Format.OnDiskFormat.DataOffsetBytes);
            return state.Dirty + state.Writeback;
        });

        // B's own writes (its assembly's superblock updates) flushed first: from here on B writes nothing.
        await b.FlushAsync();
        var data = new byte[a.Geometry.StripeDataBytes * 4];
        new Random(703).NextBytes(data);
        await a.WriteAsync(0, data);
        Assert.True(DirtyData() > 0, "the write left no dirty page: the test shows nothing");

        await b.FlushAsync();
        Assert.True(DirtyData() > 0, "the plain flush of an opener that wrote nothing flushed the members");
        await b.FlushEveryMemberAsync();
        Assert.Equal(0, DirtyData());

        await b.DisposeAsync();
        await a.DisposeAsync();
        foreach (IBlockDevice d in created.Concat(handlesA).Concat(handlesB)) await d.DisposeAsync();
    }
}
