using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// A member whose host cannot be reached is away, not failed: the volume serves degraded, every write that leaves it
/// out is recorded in the away area before it is acknowledged, and when the disk returns it catches up only those
/// stripes (issue 15, items 3 and 4).
/// </summary>
public sealed class AwayMemberTests
{
    private const int Chunk = 64 << 10;
    private const long Stripes = 256;

    /// <summary>A member device behind a switch: off, every request fails as a host that cannot be reached.</summary>
    /// <remarks>
    /// With <paramref name="keepsUnflushed"/>, its host can also lose power (<see cref="PowerLossAsync"/>): what was
    /// written since the last flush is lost, as the page cache of a host that dies holds it.
    /// </remarks>
    private sealed class HostSwitchDevice(IBlockDevice inner, bool keepsUnflushed = false) : IBlockDevice
    {
        private readonly List<(long Offset, byte[] Old)> _unflushed = [];

        public volatile bool Reachable = true;

        /// <summary>Off, requests fail as the disk's own error instead (evidence from the host that has it).</summary>
        public volatile bool DiskError;

        public string Name => inner.Name;
        public int SectorSizeBytes => inner.SectorSizeBytes;
        public long CapacityBytes => inner.CapacityBytes;
        public int MaxInFlightIo => inner.MaxInFlightIo;

        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            Check();
            return inner.ReadAsync(offsetBytes, destination, cancellationToken);
        }

        public async ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            Check();
            if (keepsUnflushed)
            {
                var old = new byte[source.Length];
                await inner.ReadAsync(offsetBytes, old, cancellationToken);
                lock (_unflushed) _unflushed.Add((offsetBytes, old));
            }
            await inner.WriteAsync(offsetBytes, source, cancellationToken);
        }

        public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Check();
            await inner.FlushAsync(cancellationToken);
            lock (_unflushed) _unflushed.Clear();
        }

        /// <summary>The host goes down: every write since the last flush is undone, newest first.</summary>
        public async Task PowerLossAsync()
        {
            Assert.True(keepsUnflushed, "this device keeps no record of its unflushed writes");
            Reachable = false;
            (long Offset, byte[] Old)[] undo;
            lock (_unflushed)
            {
                undo = [.. _unflushed];
                _unflushed.Clear();
            }
            for (var i = undo.Length - 1; i >= 0; i--) await inner.WriteAsync(undo[i].Offset, undo[i].Old);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;

        private void Check()
        {
            if (DiskError) throw new BlockDeviceException(Name, "medium error");
            if (!Reachable) throw new MemberUnreachableException(Name, "host h2 is not reachable");
        }
    }

    private static (MemoryBlockDevice[] Raw, HostSwitchDevice[] Switched) Disks(int members)
    {
        MemoryBlockDevice[] raw = Members(members, Chunk, Stripes);
        return (raw, raw.Select(d => new HostSwitchDevice(d)).ToArray());
    }

    private static RaidVolumeOptions Opener(int slot) => new() { WriterSlot = slot, RecoverAllWriterSlots = false };

    private static async Task<byte[]> FillAsync(RaidVolume volume, int seed)
    {
        var model = new byte[volume.CapacityBytes];
        new Random(seed).NextBytes(model);
        for (long at = 0; at < model.Length; at += 4 << 20)
            await volume.WriteAsync(at, model.AsMemory((int)at, (int)Math.Min(4 << 20, model.Length - at)));
        return model;
    }

    /// <summary>Writes <paramref name="bytes"/> of new data at <paramref name="offset"/> into the volume and the model.</summary>
    private static async Task WriteAsync(RaidVolume volume, byte[] model, long offset, int bytes, int seed)
    {
        var data = new byte[bytes];
        new Random(seed).NextBytes(data);
        await volume.WriteAsync(offset, data);
        data.CopyTo(model, offset);
    }

    private static long SlotBytes => Chunk + OnDiskFormat.MetadataBytes(Chunk);

    private static long Count(IReadOnlyList<(long First, long End)> ranges) => ranges.Sum(r => r.End - r.First);

    [Fact]
    public async Task UnreachableMember_IsAwayNotFailed_AndTheVolumeKeepsServing()
    {
        (_, HostSwitchDevice[] disks) = Disks(5);
        await using RaidVolume volume = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 5, Chunk), disks);
        byte[] model = await FillAsync(volume, 1);

        disks[2].Reachable = false;
        await WriteAsync(volume, model, 3 << 20, 200 << 10, 2);

        MemberInfo away = volume.Members[2];
        Assert.Equal(MemberState.Missing, away.State);
        Assert.StartsWith("away:", away.Reason);
        Assert.Equal(VolumeHealth.Degraded, volume.Health);
        AssertSame(model, await ReadAllAsync(volume), "degraded read with member 2 away");
    }

    [Fact]
    public async Task ErrorReportedByTheDisk_StillFailsTheMember()
    {
        (_, HostSwitchDevice[] disks) = Disks(5);
        await using RaidVolume volume = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 5, Chunk), disks);
        byte[] model = await FillAsync(volume, 3);

        disks[1].DiskError = true;
        await WriteAsync(volume, model, 1 << 20, 64 << 10, 4);

        Assert.Equal(MemberState.Failed, volume.Members[1].State);
        Assert.Equal(0, volume.AwayRegions);
        AssertSame(model, await ReadAllAsync(volume), "degraded read with member 1 failed");
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 5, new[] { 2 })]
    [InlineData(RaidLevel.Raid6, 6, new[] { 1, 4 })]
    public async Task ReturningMembers_CatchUpOnlyTheStripesWrittenWhileAway_AndHoldTheData(
        RaidLevel level,
        int members,
        int[] away)
    {
        (MemoryBlockDevice[] raw, HostSwitchDevice[] disks) = Disks(members);
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(level, members, Chunk), disks, Opener(0));
        byte[] model = await FillAsync(volume, 5);
        // Flushed before the members go: writes they took and never saw flushed would be theirs to catch up as well
        // (PowerLossOfAMembersHost_...).
        await volume.FlushAsync();
        long regionBytes = volume.AwayRegionStripes * volume.Geometry.StripeDataBytes;

        foreach (var m in away) disks[m].Reachable = false;
        // Two small writes in two regions far apart, the first of them the one that finds the members gone.
        await WriteAsync(volume, model, 2 * regionBytes + 4096, 96 << 10, 6);
        await WriteAsync(volume, model, 40 * regionBytes, 8192, 7);
        foreach (var m in away) Assert.Equal(MemberState.Missing, volume.Members[m].State);
        Assert.Equal(2, volume.AwayRegions);
        await volume.DisposeAsync();

        // The host returns; a new opener (as a silo does) assembles every member: they rejoin and catch up.
        foreach (var m in away) disks[m].Reachable = true;
        await using RaidVolume back = await RaidVolume.AssembleAsync(disks, Opener(1));
        foreach (var m in away) Assert.Equal(MemberState.Resyncing, back.Members[m].State);
        IReadOnlyList<(long First, long End)> recorded = await back.AwayStripesAsync();
        Assert.Equal(2 * back.AwayRegionStripes, Count(recorded));
        long reported = 0;
        await back.RebuildAsync(new SyncProgress(p => reported = p.BytesMoved));

        foreach (var m in away) Assert.Equal(MemberState.Active, back.Members[m].State);
        Assert.Equal(VolumeHealth.Healthy, back.Health);
        Assert.Equal(away.Length * Count(recorded) * SlotBytes, back.RebuildBytesMoved);
        Assert.Equal(back.RebuildBytesMoved, reported);
        Assert.True(back.RebuildBytesMoved < away.Length * Stripes * SlotBytes / 20, "catch-up moved 5 % or more");
        ScrubReport scrub = await back.ScrubAsync(repair: false);
        Assert.Equal(0, scrub.ParityMismatches);
        Assert.Equal(0, scrub.ChecksumErrors);
        AssertSame(model, await ReadAllAsync(back), "all members back");

        await back.DisposeAsync();

        // The caught-up members must hold the data: read it with as many other members gone as the level allows.
        IBlockDevice?[] others = [.. raw];
        foreach (var i in Enumerable.Range(0, members).Where(i => !away.Contains(i)).Take(away.Length)) others[i] = null;
        await using RaidVolume without = await RaidVolume.AssembleAsync(others, Opener(2));
        Assert.Equal(VolumeHealth.Degraded, without.Health);
        AssertSame(model, await ReadAllAsync(without), "read through the caught-up members");
    }

    [Fact]
    public async Task MarksOfEveryWriter_AreCaughtUp_ThenClearedOnceAllArePresent()
    {
        (_, HostSwitchDevice[] disks) = Disks(5);
        RaidVolume a = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 5, Chunk), disks, Opener(0));
        byte[] model = await FillAsync(a, 8);
        await a.FlushAsync();
        RaidVolume b = await RaidVolume.AssembleAsync(disks, Opener(1));
        long regionBytes = a.AwayRegionStripes * a.Geometry.StripeDataBytes;

        disks[3].Reachable = false;
        await WriteAsync(a, model, 5 * regionBytes, 4096, 9);
        await WriteAsync(b, model, 30 * regionBytes, 4096, 10);
        Assert.Equal(1, a.AwayRegions);
        Assert.Equal(1, b.AwayRegions);
        await a.DisposeAsync();
        await b.DisposeAsync();

        disks[3].Reachable = true;
        await using RaidVolume c = await RaidVolume.AssembleAsync(disks, Opener(2));
        Assert.Equal(2 * c.AwayRegionStripes, Count(await c.AwayStripesAsync()));
        await c.RebuildAsync();
        Assert.Equal(2 * c.AwayRegionStripes * SlotBytes, c.RebuildBytesMoved);
        AssertSame(model, await ReadAllAsync(c), "after catching up two writers' marks");

        // The writers of those marks return too (the same slots); each clears its page on its first flush.
        await using RaidVolume a2 = await RaidVolume.AssembleAsync(disks, Opener(0));
        await using RaidVolume b2 = await RaidVolume.AssembleAsync(disks, Opener(1));
        Assert.Equal(1, a2.AwayRegions);
        await a2.FlushAsync();
        await b2.FlushAsync();
        Assert.Equal(0, a2.AwayRegions);
        Assert.Empty(await c.AwayStripesAsync());
    }

    [Fact]
    public async Task WriteDuringCatchUp_AboveTheCursor_IsMarkedAndCaughtUp()
    {
        (MemoryBlockDevice[] raw, HostSwitchDevice[] disks) = Disks(5);
        RaidVolume a = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 5, Chunk), disks, Opener(0));
        byte[] model = await FillAsync(a, 11);
        await a.FlushAsync();
        disks[0].Reachable = false;
        await WriteAsync(a, model, 4096, 4096, 12);
        await a.DisposeAsync();

        disks[0].Reachable = true;
        await using RaidVolume back = await RaidVolume.AssembleAsync(disks, Opener(1));
        // Catch up the first half, then write into the second half (the member is left out there), then finish.
        await back.RebuildStripesAsync(Stripes / 2);
        Assert.Equal(MemberState.Resyncing, back.Members[0].State);
        var late = (Stripes - 3) * back.Geometry.StripeDataBytes;
        await WriteAsync(back, model, late, 8192, 13);
        await back.RebuildStripesAsync(Stripes);
        Assert.Equal(MemberState.Active, back.Members[0].State);
        Assert.Equal(2 * back.AwayRegionStripes * SlotBytes, back.RebuildBytesMoved);
        await back.DisposeAsync();

        IBlockDevice?[] withoutOne = raw.Select(d => (IBlockDevice?)d).ToArray();
        withoutOne[4] = null;
        await using RaidVolume check = await RaidVolume.AssembleAsync(withoutOne, Opener(2));
        AssertSame(model, await ReadAllAsync(check), "member 0 caught up the write made during its catch-up");
    }

    /// <summary>
    /// A member's host loses power after a write reached it and before any flush: the member comes back without that
    /// write, though the write was made before the member went away and so is not in the away record as written. Its
    /// region must still be caught up (md keeps its bitmap's bits while an array is degraded for the same reason): the
    /// writer's intent marks, which its flush would clear, go to the away record first.
    /// </summary>
    [Fact]
    public async Task PowerLossOfAMembersHost_LosesItsUnflushedWrites_AndItsReturnCatchesThemUp()
    {
        var (raw, disks, volume, model) = await FlushedVolumeAsync(seed: 21);
        long regionBytes = volume.AwayRegionStripes * volume.Geometry.StripeDataBytes;
        var stripeBytes = (int)volume.Geometry.StripeDataBytes;

        // Acknowledged, not flushed: a whole stripe, so that member 2 holds part of it.
        await WriteAsync(volume, model, 7 * regionBytes, stripeBytes, 22);
        await disks[2].PowerLossAsync();
        // The next write finds member 2 away; the flush after it clears the intent marks it may.
        await WriteAsync(volume, model, 40 * regionBytes, stripeBytes, 23);
        Assert.Equal(MemberState.Missing, volume.Members[2].State);
        await volume.FlushAsync();
        await volume.DisposeAsync();

        await ReturnAndCheckMember2Async(raw, disks, model, firstSlot: 1, "member 2 back after its host lost power");
    }

    /// <summary>
    /// The same with the writer dead as well (its host's silo and one member's host lost at once): another opener
    /// recovers the dead writer's intent slot while the member is away, and the clear that ends the recovery must
    /// leave the slot's marks to the away record.
    /// </summary>
    [Fact]
    public async Task PowerLossOfAMembersHost_WithItsWriterDead_TheSlotsRecoveryLeavesItsMarksForTheReturn()
    {
        var (raw, disks, writer, model) = await FlushedVolumeAsync(seed: 31);
        long regionBytes = writer.AwayRegionStripes * writer.Geometry.StripeDataBytes;

        // Acknowledged, not flushed; then the writer dies (never disposed) and member 2's host loses power.
        await WriteAsync(writer, model, 9 * regionBytes, (int)writer.Geometry.StripeDataBytes, 32);
        await disks[2].PowerLossAsync();

        await using (RaidVolume survivor = await RaidVolume.AssembleAsync(disks, Opener(1)))
        {
            Assert.Equal(MemberState.Missing, survivor.Members[2].State);
            Assert.True(await survivor.RecoverWriterSlotAsync(0) > 0, "the dead writer's slot marked nothing");
            await survivor.FlushAsync();
        }

        await ReturnAndCheckMember2Async(
            raw, disks, model, firstSlot: 2, "member 2 back after its host lost power with the writer");
    }

    /// <summary>A RAID-5 4+1 volume over <see cref="HostSwitchDevice"/>s that keep their unflushed writes, filled and flushed.</summary>
    private static async Task<(MemoryBlockDevice[] Raw, HostSwitchDevice[] Disks, RaidVolume Volume, byte[] Model)>
        FlushedVolumeAsync(int seed)
    {
        MemoryBlockDevice[] raw = Members(5, Chunk, Stripes);
        HostSwitchDevice[] disks = [.. raw.Select(d => new HostSwitchDevice(d, keepsUnflushed: true))];
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 5, Chunk), disks, Opener(0));
        byte[] model = await FillAsync(volume, seed);
        await volume.FlushAsync();
        return (raw, disks, volume, model);
    }

    /// <summary>
    /// Member 2's host returns: a new opener (slot <paramref name="firstSlot"/>) catches it up, and another reads the
    /// whole volume with member 0 gone, so that every block of member 2's rows comes from member 2.
    /// </summary>
    private static async Task ReturnAndCheckMember2Async(
        MemoryBlockDevice[] raw, HostSwitchDevice[] disks, byte[] model, int firstSlot, string context)
    {
        disks[2].Reachable = true;
        await using (RaidVolume back = await RaidVolume.AssembleAsync(disks, Opener(firstSlot)))
        {
            Assert.Equal(MemberState.Resyncing, back.Members[2].State);
            await back.RebuildAsync();
            Assert.Equal(MemberState.Active, back.Members[2].State);
        }
        IBlockDevice?[] without = [.. raw];
        without[0] = null;
        await using RaidVolume check = await RaidVolume.AssembleAsync(without, Opener(firstSlot + 1));
        AssertSame(model, await ReadAllAsync(check), context);
    }

    /// <summary>Reports synchronously (Progress&lt;T&gt; posts to the thread pool, too late for an assertion).</summary>
    private sealed class SyncProgress(Action<RebuildProgress> report) : IProgress<RebuildProgress>
    {
        public void Report(RebuildProgress value) => report(value);
    }
}
