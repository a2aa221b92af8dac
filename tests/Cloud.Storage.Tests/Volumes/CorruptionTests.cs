using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// DESIGN.md invariant 6: a flipped bit on a member never reaches a reader; it is caught by the checksum and repaired.
/// </summary>
public sealed class CorruptionTests
{
    [Theory]
    [InlineData(RaidLevel.Raid5, 4, 301)]
    [InlineData(RaidLevel.Raid6, 5, 302)]
    [InlineData(RaidLevel.Raid1, 2, 303)]
    public async Task BitFlippedOnTheMedium_IsCaughtOnRead_AndRepairedInPlace(RaidLevel level, int members, int seed)
    {
        var random = new Random(seed);
        (RaidVolume volume, MemoryBlockDevice[] devices) = await CreateAsync(level, members, 8192, 6);
        await using var guard = volume;
        var model = new byte[volume.CapacityBytes];
        random.NextBytes(model);
        await volume.WriteAsync(0, model);

        var offset = random.NextInt64(volume.CapacityBytes / Block) * Block;
        ChunkAddress a = volume.Layout.Locate(offset);
        var bit = random.Next(Block * 8);
        // RAID-1 reads stripe s from copy s mod n first: corrupt that copy so the read meets it.
        if (level == RaidLevel.Raid1) a = a with { Member = (int)(a.Stripe % members) };
        devices[a.Member].Contents.Span[(int)a.MemberOffsetBytes + bit / 8] ^= (byte)(1 << (bit % 8));

        var back = new byte[Block];
        await volume.ReadAsync(offset, back);
        Assert.True(
            model.AsSpan((int)offset, Block).SequenceEqual(back), $"seed {seed}: corrupt data reached the reader");
        // Repaired on the medium, not just hidden: the raw block is right again.
        Assert.True(
            model.AsSpan(
                (int)offset,
                Block).SequenceEqual(devices[a.Member].Contents.Span.Slice((int)a.MemberOffsetBytes, Block)),
            $"seed {seed}: not repaired");
        ScrubReport report = await volume.ScrubAsync(repair: false);
        Assert.Equal(0, report.ChecksumErrors + report.ParityMismatches);
    }

    [Fact]
    public async Task FlipsOnReadFromTheDevice_NeverReachTheReader()
    {
        const int seed = 304;
        var random = new Random(seed);
        MemoryBlockDevice[] raw = Members(5, 4096, 8);
        var faulty = raw.Select((d, i) => new FaultInjectingBlockDevice(d, seed + i)).ToArray();
        await using RaidVolume volume = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid6, 5, 4096), faulty);
        var model = new byte[volume.CapacityBytes];
        random.NextBytes(model);
        await volume.WriteAsync(0, model);
        // Member 2 returns a flipped bit in every block it reads, member 4 in some.
        faulty[2].FlipBitsOnRead(OnDiskFormat.DataOffsetBytes, raw[2].CapacityBytes - OnDiskFormat.DataOffsetBytes);
        faulty[4].BitFlipProbability = 0.3;
        for (var pass = 0; pass < 3; pass++)
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed} pass {pass}");
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 4)]
    [InlineData(RaidLevel.Raid6, 4)]
    [InlineData(RaidLevel.Raid1, 3)]
    public async Task Scrub_CountsCorruptDataAndParity_RepairsThem_ThenFindsNothing(RaidLevel level, int members)
    {
        const int seed = 305;
        var random = new Random(seed);
        (RaidVolume volume, MemoryBlockDevice[] devices) = await CreateAsync(level, members, 4096, 8);
        await using var guard = volume;
        var model = new byte[volume.CapacityBytes];
        random.NextBytes(model);
        await volume.WriteAsync(0, model);

        // Corrupt one chunk on a different member in three different stripes (data or parity alike).
        for (var stripe = 1; stripe <= 3; stripe++)
        {
            var member = (stripe * 2) % members;
            devices[member].Contents.Span[(int)volume.Layout.MemberOffsetBytes(stripe, 100)] ^= 0x40;
        }
        ScrubReport found = await volume.ScrubAsync(repair: true);
        Assert.Equal(3, found.ChecksumErrors);
        Assert.Equal(3, found.Repaired);
        Assert.Equal(0, found.Unrecoverable);
        ScrubReport after = await volume.ScrubAsync(repair: false);
        Assert.Equal(0, after.ChecksumErrors + after.ParityMismatches);
        AssertSame(model, await ReadAllAsync(volume), $"seed {seed}");
    }

    [Fact]
    public async Task Scrub_FindsParityThatDisagreesWithVerifiedData_AndRegeneratesIt()
    {
        (RaidVolume volume, MemoryBlockDevice[] devices) = await CreateAsync(RaidLevel.Raid5, 3, 4096, 4);
        await using var guard = volume;
        var data = new byte[volume.CapacityBytes];
        new Random(306).NextBytes(data);
        await volume.WriteAsync(0, data);
        // Rewrite a parity block together with a matching checksum: only the parity check can see it.
        var p = volume.Layout.ParityMember(2);
        var at = volume.Layout.MemberOffsetBytes(2, 0);
        Span<byte> parity = devices[p].Contents.Span.Slice((int)at, Block);
        parity[7] ^= 1;
        OnDiskFormat.WriteEntry(
            devices[p].Contents.Span.Slice((int)volume.Layout.MemberOffsetBytes(2, 4096), 4096),
            0,
            1,
            OnDiskFormat.BlockChecksum(parity));
        ScrubReport report = await volume.ScrubAsync(repair: true);
        Assert.Equal((1L, 0L, 1L), (report.ParityMismatches, report.ChecksumErrors, report.Repaired));
        Assert.Equal(0, (await volume.ScrubAsync(repair: false)).ParityMismatches);
    }
}
