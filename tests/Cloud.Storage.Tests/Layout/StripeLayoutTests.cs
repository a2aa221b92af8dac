using Cloud.Storage.Layout;

namespace Cloud.Storage.Tests.Layout;

public sealed class StripeLayoutTests
{
    public static TheoryData<RaidLevel, int, int> Geometries()
    {
        var data = new TheoryData<RaidLevel, int, int>();
        foreach ((RaidLevel level, var members) in new[]
                 {
                     (RaidLevel.Raid0, new[] { 1, 2, 5 }), (RaidLevel.Raid1, new[] { 2, 3 }),
                     (RaidLevel.Raid5, new[] { 3, 4, 7 }), (RaidLevel.Raid6, new[] { 4, 5, 8 }),
                 })
        foreach (var n in members)
        foreach (var chunk in new[] { 4096, 65536, 1 << 20 })
            data.Add(level, n, chunk);
        return data;
    }

    [Theory]
    [MemberData(nameof(Geometries))]
    public void EveryBlock_RoundTrips_AndMapsToADistinctDataLocation(RaidLevel level, int members, int chunkBytes)
    {
        var geometry = new VolumeGeometry(level, members, chunkBytes);
        const long stripes = 3 * 8 + 1;
        var layout = new StripeLayout(geometry, stripes, dataOffsetBytes: 1 << 20, chunkStrideBytes: chunkBytes + 4096);
        var seen = new HashSet<(int Member, long Offset)>();
        for (long offset = 0; offset < layout.CapacityBytes; offset += Math.Max(4096, chunkBytes / 4))
        {
            ChunkAddress a = layout.Locate(offset);
            Assert.Equal(offset, layout.ToVolumeOffset(a.Stripe, a.Member, a.OffsetInChunkBytes));
            Assert.Equal(a.DataIndex, layout.RoleOf(a.Stripe, a.Member));
            Assert.Equal(layout.MemberOffsetBytes(a.Stripe, a.OffsetInChunkBytes), a.MemberOffsetBytes);
            Assert.True(seen.Add((a.Member, a.MemberOffsetBytes)), $"{geometry}: offset {offset} collides");
        }
    }

    [Theory]
    [MemberData(nameof(Geometries))]
    public void EachStripe_UsesEveryMemberOnce(RaidLevel level, int members, int chunkBytes)
    {
        var geometry = new VolumeGeometry(level, members, chunkBytes);
        var layout = new StripeLayout(geometry, 2 * members);
        for (long s = 0; s < layout.StripeCount; s++)
        {
            if (level == RaidLevel.Raid1) continue;
            var slots = geometry.DataMemberCount + geometry.ParityMemberCount;
            Assert.Equal(members, slots);
            var used = new HashSet<int>();
            for (var slot = 0; slot < slots; slot++) Assert.True(used.Add(layout.MemberAtLogicalSlot(s, slot)));
            for (var m = 0; m < members; m++)
            {
                var role = layout.RoleOf(s, m);
                var slot = role >= 0
                    ? role
                    : role == StripeLayout.RoleP ? geometry.DataMemberCount : geometry.DataMemberCount + 1;
                Assert.Equal(m, layout.MemberAtLogicalSlot(s, slot));
            }
        }
    }

    /// <summary>
    /// md's left-symmetric RAID-5 on 4 disks (mdadm(8), md's raid5_compute_sector): parity walks from the last disk
    /// down.
    /// </summary>
    [Fact]
    public void Raid5_FourMembers_MatchesMdLeftSymmetric()
    {
        var layout = new StripeLayout(new VolumeGeometry(RaidLevel.Raid5, 4, 4096), 8);
        // stripe: member roles (data index, or P)
        string[] expected = ["0 1 2 P", "1 2 P 0", "2 P 0 1", "P 0 1 2", "0 1 2 P"];
        for (var s = 0; s < expected.Length; s++)
            Assert.Equal(expected[s], string.Join(' ', Enumerable.Range(0, 4).Select(m => Role(layout.RoleOf(s, m)))));
    }

    /// <summary>
    /// md's default RAID-6 (left-symmetric): P walks down from the last disk and Q follows it, wrapping.
    /// </summary>
    [Fact]
    public void Raid6_FiveMembers_MatchesMdLeftSymmetric()
    {
        var layout = new StripeLayout(new VolumeGeometry(RaidLevel.Raid6, 5, 4096), 8);
        string[] expected = ["Q 0 1 2 P", "0 1 2 P Q", "1 2 P Q 0", "2 P Q 0 1", "P Q 0 1 2", "Q 0 1 2 P"];
        for (var s = 0; s < expected.Length; s++)
            Assert.Equal(expected[s], string.Join(' ', Enumerable.Range(0, 5).Select(m => Role(layout.RoleOf(s, m)))));
    }

    private static string Role(int role)
        => role switch { StripeLayout.RoleP => "P", StripeLayout.RoleQ => "Q", _ => role.ToString() };

    [Fact]
    public void Raid1_EveryMemberHoldsTheData()
    {
        var layout = new StripeLayout(new VolumeGeometry(RaidLevel.Raid1, 3, 8192), 4);
        Assert.Equal(4 * 8192, layout.CapacityBytes);
        for (var m = 0; m < 3; m++) Assert.Equal(8192 + 100, layout.ToVolumeOffset(1, m, 100));
    }

    [Theory]
    [InlineData(RaidLevel.Raid0, 0, 65536, "MemberCount")]
    [InlineData(RaidLevel.Raid1, 1, 65536, "MemberCount")]
    [InlineData(RaidLevel.Raid5, 2, 65536, "MemberCount")]
    [InlineData(RaidLevel.Raid6, 3, 65536, "MemberCount")]
    [InlineData(RaidLevel.Raid5, 65, 65536, "MemberCount")]
    [InlineData(RaidLevel.Raid5, 4, 3 * 4096, "ChunkSizeBytes")]
    [InlineData(RaidLevel.Raid5, 4, 2048, "ChunkSizeBytes")]
    [InlineData(RaidLevel.Raid5, 4, 2 << 20, "ChunkSizeBytes")]
    [InlineData((RaidLevel)4, 4, 65536, "Level")]
    public void InvalidGeometry_IsRefused_NamingValueAndRange(RaidLevel level, int members, int chunk, string field)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new VolumeGeometry(level, members, chunk).Validate());
        Assert.Equal(field, e.ParamName);
        Assert.Contains(
            field == "ChunkSizeBytes" ? chunk.ToString() : field == "Level" ? "4" : members.ToString(), e.Message);
        Assert.Contains(field == "Level" ? "allowed" : "..", e.Message);
    }

    [Fact]
    public void OutOfRangeOffsets_AreRefused()
    {
        var layout = new StripeLayout(new VolumeGeometry(RaidLevel.Raid5, 3, 4096), 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.Locate(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.Locate(layout.CapacityBytes));
        Assert.Throws<ArgumentException>(() => layout.ToVolumeOffset(0, layout.ParityMember(0), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.StripeRange(0, 0));
        Assert.Equal((0L, 1L), layout.StripeRange(4096, 8192));
    }

    [Theory]
    // per data chunk: first and end dirty block, 16 blocks per chunk, 4 data chunks
    [InlineData(new[] { 0, 0, 0, 0 }, new[] { 16, 16, 16, 16 }, 1, WriteStrategy.FullStripe, 0)]
    [InlineData(new[] { 0, 0, 0, 0 }, new[] { 1, 0, 0, 0 }, 1, WriteStrategy.ReadModifyWrite, 2)]
    [InlineData(new[] { 0, 0, 0, 0 }, new[] { 1, 0, 0, 0 }, 2, WriteStrategy.ReconstructWrite, 3)]
    [InlineData(new[] { 0, 0, 0, 0 }, new[] { 16, 16, 16, 0 }, 1, WriteStrategy.ReconstructWrite, 16)]
    // a tie goes to rcw, as in md
    [InlineData(new[] { 8, 0, 0, 0 }, new[] { 16, 16, 0, 0 }, 1, WriteStrategy.ReconstructWrite, 40)]
    [InlineData(new[] { 12, 0, 0, 0 }, new[] { 16, 0, 0, 0 }, 1, WriteStrategy.ReadModifyWrite, 8)]
    public void Planner_CountsReadsLikeMd(int[] first, int[] end, int parity, WriteStrategy strategy, int reads)
    {
        Assert.Equal((strategy, reads), WritePlanner.Plan(first, end, parity));
    }
}
