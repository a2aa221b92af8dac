using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>Assembly from disks alone, and refusal of foreign, stale, misplaced and blank disks.</summary>
public sealed class SuperblockTests
{
    private static async Task<MemoryBlockDevice[]> FormattedAsync(
        string name = "vol",
        RaidLevel level = RaidLevel.Raid5,
        int members = 4)
    {
        MemoryBlockDevice[] devices = Members(members, 4096, 4, prefix: name);
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(level, members, 4096, name), devices);
        await volume.WriteAsync(0, new byte[Block]);
        await volume.DisposeAsync();
        return devices;
    }

    [Fact]
    public async Task Assemble_RecoversDefinitionFromTheDisksAlone()
    {
        var definition = Definition(RaidLevel.Raid6, 5, 16384, "payroll");
        MemoryBlockDevice[] devices = Members(5, 16384, 4);
        long capacity;
        await using (RaidVolume created = await RaidVolume.CreateAsync(definition, devices)) capacity =
            created.CapacityBytes;
        await using RaidVolume volume = await RaidVolume.AssembleAsync(devices);
        Assert.Equal(definition, volume.Definition);
        Assert.Equal(capacity, volume.CapacityBytes);
    }

    [Fact]
    public async Task ForeignDisk_IsRefused()
    {
        MemoryBlockDevice[] ours = await FormattedAsync("ours");
        MemoryBlockDevice[] theirs = await FormattedAsync("theirs");
        IBlockDevice[] mixed = [ours[0], ours[1], theirs[2], ours[3]];
        var e = await Assert.ThrowsAsync<VolumeFormatException>(() => RaidVolume.AssembleAsync(mixed).AsTask());
        Assert.Contains("foreign", e.Message);
        Assert.Contains("theirs", e.Message);
        Assert.Equal(2, e.MemberIndex);
    }

    [Fact]
    public async Task DiskInTheWrongPosition_IsRefused()
    {
        MemoryBlockDevice[] d = await FormattedAsync();
        var e = await Assert.ThrowsAsync<VolumeFormatException>(
            () => RaidVolume.AssembleAsync([d[1], d[0], d[2], d[3]]).AsTask());
        Assert.Contains("holds member 1", e.Message);
        Assert.Contains("given as member 0", e.Message);
    }

    [Fact]
    public async Task FailedDisk_ComingBack_IsRefusedAsStale()
    {
        MemoryBlockDevice[] d = await FormattedAsync();
        await using (RaidVolume volume = await RaidVolume.AssembleAsync(d))
        {
            await volume.FailMemberAsync(2, "operator");
            await volume.WriteAsync(0, new byte[Block]);
        }
        var e = await Assert.ThrowsAsync<VolumeFormatException>(() => RaidVolume.AssembleAsync(d).AsTask());
        Assert.Contains("stale", e.Message);
        Assert.Equal(2, e.MemberIndex);
        // Without it, the volume assembles degraded.
        await using RaidVolume degraded = await RaidVolume.AssembleAsync([d[0], d[1], null, d[3]]);
        Assert.Equal(VolumeHealth.Degraded, degraded.Health);
    }

    [Fact]
    public async Task ReplacedDisk_ComingBack_IsRefusedAsStale()
    {
        MemoryBlockDevice[] d = await FormattedAsync();
        var replacement = new MemoryBlockDevice(d[1].CapacityBytes, "new1");
        await using (RaidVolume volume = await RaidVolume.AssembleAsync(d))
        {
            await volume.FailMemberAsync(1, "operator");
            await volume.ReplaceMemberAsync(1, replacement);
            await volume.RebuildAsync();
        }
        var e = await Assert.ThrowsAsync<VolumeFormatException>(() => RaidVolume.AssembleAsync(d).AsTask());
        Assert.Contains("replaced", e.Message);
        await using RaidVolume ok = await RaidVolume.AssembleAsync([d[0], replacement, d[2], d[3]]);
        Assert.Equal(VolumeHealth.Healthy, ok.Health);
    }

    [Fact]
    public async Task BlankDisk_IsRefused_AsNotAMember()
    {
        MemoryBlockDevice[] d = await FormattedAsync();
        var blank = new MemoryBlockDevice(d[0].CapacityBytes, "blank");
        var e = await Assert.ThrowsAsync<VolumeFormatException>(
            () => RaidVolume.AssembleAsync([d[0], d[1], blank, d[3]]).AsTask());
        Assert.Contains("blank", e.Message);
        Assert.Contains("no valid superblock", e.Message);
    }

    [Fact]
    public async Task CorruptSuperblockCopy_FallsBackToTheOther()
    {
        MemoryBlockDevice[] d = await FormattedAsync();
        await using (RaidVolume v = await RaidVolume.AssembleAsync(d)) { }
        // Damage the newer copy on one member: the older copy still identifies it.
        d[0].Contents.Span[100] ^= 0xFF;
        d[0].Contents.Span[OnDiskFormat.SuperblockBytes + 100] ^= 0x00;
        await using RaidVolume volume = await RaidVolume.AssembleAsync(d);
        Assert.Equal(VolumeHealth.Healthy, volume.Health);
    }

    [Fact]
    public async Task TooFewMembers_IsRefused_NamingWhatTheLevelTolerates()
    {
        MemoryBlockDevice[] d = await FormattedAsync();
        var e = await Assert.ThrowsAsync<VolumeFormatException>(
            () => RaidVolume.AssembleAsync([d[0], null, null, d[3]]).AsTask());
        Assert.Contains("tolerates 1", e.Message);
        var count = await Assert.ThrowsAsync<VolumeFormatException>(
            () => RaidVolume.AssembleAsync([d[0], d[1], d[2]]).AsTask());
        Assert.Contains("has 4 members", count.Message);
    }

    [Fact]
    public void SuperblockRoundTrips_AndDetectsDamage()
    {
        var sb = new Superblock
        {
            VolumeId = Guid.NewGuid(), VolumeName = "v", MemberIndex = 1,
            Geometry = new VolumeGeometry(RaidLevel.Raid6, 4, 65536),
            StripeCount = 10, Generation = 7, Created = DateTimeOffset.FromUnixTimeMilliseconds(1000),
            Updated = DateTimeOffset.FromUnixTimeMilliseconds(2000),
            Members = Enumerable.Range(
                0, 4).Select(i => new MemberRecord(Guid.NewGuid(), (MemberState)(i % 3), i * 5)).ToArray(),
        };
        var bytes = new byte[OnDiskFormat.SuperblockBytes];
        sb.WriteTo(bytes);
        Superblock? back = Superblock.TryRead(bytes, out var error);
        Assert.Null(error);
        Assert.Equal(sb.VolumeId, back!.VolumeId);
        Assert.Equal(sb.Members, back.Members);
        Assert.Equal(sb.Generation, back.Generation);
        Assert.Equal(0, back.PartialParitySlotBytes);
        bytes[3000] ^= 1;
        Assert.Null(Superblock.TryRead(bytes, out error));
        Assert.Contains("checksum", error);
    }

    [Fact]
    public void PartialParityArea_RoundTrips_AndOneThatDoesNotFitTheGeometry_IsRefused()
    {
        var geometry = new VolumeGeometry(RaidLevel.Raid5, 5, 65536);
        var sb = new Superblock
        {
            VolumeId = Guid.NewGuid(), VolumeName = "v", MemberIndex = 0, Geometry = geometry, StripeCount = 10,
            Generation = 1, Created = DateTimeOffset.UnixEpoch, Updated = DateTimeOffset.UnixEpoch,
            Members = Enumerable.Range(0, 5).Select(_ => new MemberRecord(Guid.NewGuid(), MemberState.Active, 0)).ToArray(),
            PartialParitySlotBytes = OnDiskFormat.PartialParitySlotBytes(65536),
        };
        var bytes = new byte[OnDiskFormat.SuperblockBytes];
        sb.WriteTo(bytes);
        Superblock? back = Superblock.TryRead(bytes, out var error);
        Assert.Null(error);
        Assert.Equal(294912, back!.PartialParitySlotBytes);
        // The area starts right after the last chunk slot, where docs/FORMAT.md puts it.
        Assert.Equal(
            OnDiskFormat.DataOffsetBytes + 10 * OnDiskFormat.ChunkStrideBytes(65536),
            BitConverter.ToInt64(bytes, 2472));

        // A ring too small for one whole-chunk entry, rewritten with a valid checksum: refused, naming it.
        BitConverter.TryWriteBytes(bytes.AsSpan(2464), 4096L);
        BitConverter.TryWriteBytes(
            bytes.AsSpan(OnDiskFormat.SuperblockBytes - 8),
            System.IO.Hashing.XxHash3.HashToUInt64(bytes.AsSpan(0, OnDiskFormat.SuperblockBytes - 8)));
        Assert.Null(Superblock.TryRead(bytes, out error));
        Assert.Contains("partial-parity area", error);
    }
}
