using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// The volume follows the planner: a full-stripe write reads nothing, a small write on a wide stripe reads only its
/// data and parity.
/// </summary>
public sealed class WritePlanningTests
{
    private static async Task<(RaidVolume, FaultInjectingBlockDevice[])> CountingVolumeAsync(
        RaidLevel level,
        int members)
    {
        MemoryBlockDevice[] raw = Members(members, 16384, 8);
        var counting = raw.Select(d => new FaultInjectingBlockDevice(d)).ToArray();
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(level, members, 16384), counting);
        // Warm the write-intent bit of the region, so only the data path's I/O is counted.
        await volume.WriteAsync(0, new byte[Block]);
        return (volume, counting);
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 5)]
    [InlineData(RaidLevel.Raid6, 6)]
    public async Task FullStripeWrite_ReadsNothing(RaidLevel level, int members)
    {
        (RaidVolume volume, FaultInjectingBlockDevice[] devices) = await CountingVolumeAsync(level, members);
        await using var guard = volume;
        long readsBefore = devices.Sum(d => d.ReadCount), writesBefore = devices.Sum(d => d.WriteCount);
        await volume.WriteAsync(0, new byte[volume.Geometry.StripeDataBytes]);
        Assert.Equal(readsBefore, devices.Sum(d => d.ReadCount));
        // one I/O per member: chunk + metadata together
        Assert.Equal(writesBefore + members, devices.Sum(d => d.WriteCount));
    }

    [Fact]
    public async Task SmallWrite_OnAWideStripe_ReadModifyWrites_TouchingOnlyItsDataAndParityMembers()
    {
        (RaidVolume volume, FaultInjectingBlockDevice[] devices) = await CountingVolumeAsync(RaidLevel.Raid5, 8);
        await using var guard = volume;
        var before = devices.Select(d => d.ReadCount + d.WriteCount).ToArray();
        await volume.WriteAsync(2 * Block, new byte[Block]);
        int dataMember = volume.Layout.Locate(2 * Block).Member, parityMember = volume.Layout.ParityMember(0);
        for (var m = 0; m < devices.Length; m++)
        {
            var ios = devices[m].ReadCount + devices[m].WriteCount - before[m];
            if (m == dataMember || m == parityMember) Assert.True(ios > 0, $"member {m} untouched");
            else Assert.Equal(0, ios);
        }
    }

    /// <summary>
    /// A writer's disk check of one block (the block timestamps it compares a re-sent copy with) reads that block's
    /// member only; it read every member of the stripe, a page-blob request each, for each batch a lock grain that
    /// moved could not vouch for.
    /// </summary>
    [Theory]
    [InlineData(RaidLevel.Raid5, 8)]
    [InlineData(RaidLevel.Raid6, 6)]
    public async Task TimestampsOfOneBlock_AreReadFromItsMemberOnly(RaidLevel level, int members)
    {
        (RaidVolume volume, FaultInjectingBlockDevice[] devices) = await CountingVolumeAsync(level, members);
        await using var guard = volume;
        await volume.WriteAsync(2 * Block, new byte[Block], writeTimestamp: 42, forceUnitAccess: false);
        var before = devices.Select(d => d.ReadCount).ToArray();
        var ts = new long[1];
        await volume.ReadBlockTimestampsAsync(2 * Block, ts);
        Assert.Equal(42, ts[0]);
        var dataMember = volume.Layout.Locate(2 * Block).Member;
        for (var m = 0; m < devices.Length; m++)
        {
            if (m == dataMember) Assert.True(devices[m].ReadCount > before[m], $"member {m}, the block's, was not read");
            else Assert.Equal(before[m], devices[m].ReadCount);
        }
    }

    [Fact]
    public async Task DuplicateMember_IsRefused()
    {
        var d = new MemoryBlockDevice(MemberBytesFor(4096, 4), "same");
        var e = await Assert.ThrowsAsync<ArgumentException>(
            () => RaidVolume.CreateAsync(Definition(RaidLevel.Raid1, 2, 4096), [d, d]).AsTask());
        Assert.Contains("same", e.Message);
    }

    [Fact]
    public async Task MemberRecordingAnotherGeometry_IsRefused()
    {
        (RaidVolume volume, MemoryBlockDevice[] devices) = await CreateAsync(RaidLevel.Raid5, 3, 4096, 4);
        await volume.DisposeAsync();
        // Rewrite member 2's superblocks with the same identity but a different chunk size.
        Superblock sb = Superblock.TryRead(devices[2].Contents.Span[..OnDiskFormat.SuperblockBytes], out _)
            ?? Superblock.TryRead(devices[2].Contents.Span[OnDiskFormat.SuperblockBytes..], out _)!;
        Superblock other = sb with
        {
            Geometry = sb.Geometry with { ChunkSizeBytes = 8192 },
            Generation = sb.Generation - 1
        };
        other.WriteTo(devices[2].Contents.Span[..OnDiskFormat.SuperblockBytes]);
        other.WriteTo(devices[2].Contents.Span[OnDiskFormat.SuperblockBytes..]);
        var e = await Assert.ThrowsAsync<VolumeFormatException>(() => RaidVolume.AssembleAsync(devices).AsTask());
        Assert.Contains("geometry", e.Message);
        Assert.Equal(2, e.MemberIndex);
    }
}
