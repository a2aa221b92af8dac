using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// The writer and members of the stripe it writes lost in one event (a host's kill in a cluster of hosts): a partial
/// write of one block is cut short at every point (a <see cref="CrashPoint"/> lets a budget of member writes through,
/// tears the next and drops the rest), then the members holding the rows that write left untouched are gone. Those rows
/// were acknowledged long before; reassembled without their members, they must read back as written.
/// </summary>
public sealed class PartialParityLogTests
{
    private const int Chunk = 8192;
    private const long Stripes = 4;
    private const long Stripe = 1;

    private static async Task<(int WrongUntouched, int Crashes, long Repaired)> CrashThenLoseAsync(
        RaidLevel level,
        int members,
        bool partialParityLog,
        bool resyncOnAssemble,
        int seed)
    {
        var wrong = 0;
        var crashes = 0;
        long repaired = 0;
        for (var budget = 0; budget < 24; budget++)
        {
            var random = new Random(seed + budget);
            var bytes = MemberBytesFor(Chunk, Stripes)
                + (partialParityLog ? OnDiskFormat.PartialParityAreaBytes(OnDiskFormat.PartialParitySlotBytes(Chunk)) : 0);
            var raw = Enumerable.Range(0, members).Select(i => new MemoryBlockDevice(bytes, $"m{i}")).ToArray();
            var faulty = raw.Select(d => new FaultInjectingBlockDevice(d)).ToArray();
            RaidVolume volume = await RaidVolume.CreateAsync(
                Definition(level, members, Chunk), faulty, new RaidVolumeOptions { PartialParityLog = partialParityLog });
            Assert.Equal(partialParityLog, volume.KeepsPartialParityLog);
            Assert.Equal(Stripes, volume.StripeCount);
            var model = new byte[volume.CapacityBytes];
            random.NextBytes(model);
            await volume.WriteAsync(0, model, writeTimestamp: 1, forceUnitAccess: false);
            await volume.FlushAsync();

            // One block of data chunk 1 of the stripe, cut short after `budget` member writes.
            var stripeData = volume.Geometry.StripeDataBytes;
            var offset = Stripe * stripeData + Chunk;
            var block = new byte[Block];
            random.NextBytes(block);
            var crash = new CrashPoint(budget, seed + budget);
            foreach (FaultInjectingBlockDevice f in faulty) f.Crash = crash;
            try { await volume.WriteAsync(offset, block, writeTimestamp: 2, forceUnitAccess: false); }
            catch (IOException) { }
            if (crash.HasCrashed) crashes++;

            // The host that died held the members of the chunks the write did not touch (two of them for RAID-6).
            int[] lost = level == RaidLevel.Raid6
                ? [volume.Layout.DataMember(Stripe, 0), volume.Layout.DataMember(Stripe, 2)]
                : [volume.Layout.DataMember(Stripe, 0)];
            var devices = raw.Select((d, i) => lost.Contains(i) ? null : (IBlockDevice)d).ToArray();
            await using RaidVolume after = await RaidVolume.AssembleAsync(
                devices, new RaidVolumeOptions { RecoverOnAssemble = resyncOnAssemble });
            var read = new byte[stripeData];
            try { await after.ReadAsync(Stripe * stripeData, read); }
            catch (VolumeDataLossException)
            {
                // The torn stripe's checksums gave it away: the untouched blocks are lost outright.
                wrong += stripeData / Block - 1;
                continue;
            }
            var expected = model.AsSpan((int)(Stripe * stripeData), stripeData);
            for (var b = 0; b < stripeData / Block; b++)
            {
                ReadOnlySpan<byte> got = read.AsSpan(b * Block, Block);
                if (b * Block == Chunk)
                {
                    // The write itself was never acknowledged, and a torn write lands some of its sectors: each sector
                    // old or new, nothing else.
                    for (var sector = 0; sector < Block; sector += 512)
                        Assert.True(
                            got.Slice(sector, 512).SequenceEqual(expected.Slice(b * Block + sector, 512))
                                || got.Slice(sector, 512).SequenceEqual(block.AsSpan(sector, 512)),
                            $"budget {budget}: sector {sector / 512} of the written block reads as neither its old nor its new bytes");
                    continue;
                }
                if (!got.SequenceEqual(expected.Slice(b * Block, Block))) wrong++;
            }
            repaired += after.PartialParityRowsRepaired;
        }
        return (wrong, crashes, repaired);
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 5, false, 501)]
    [InlineData(RaidLevel.Raid5, 5, true, 502)]
    [InlineData(RaidLevel.Raid6, 6, false, 601)]
    [InlineData(RaidLevel.Raid6, 6, true, 602)]
    public async Task WriterAndUntouchedMembersLostTogether_UntouchedRowsReadBack(
        RaidLevel level,
        int members,
        bool resyncOnAssemble,
        int seed)
    {
        (var wrong, var crashes, var repaired) = await CrashThenLoseAsync(level, members, true, resyncOnAssemble, seed);
        // A one-block write is some ten member writes (intent bitmap, log entry, data, parity and their metadata).
        Assert.True(crashes >= 8, $"only {crashes} of 24 writes were cut short; the crash is not biting");
        Assert.True(wrong == 0, $"{wrong} acknowledged blocks read back wrong after the writer and their members were lost");
        Assert.True(repaired > 0, "no parity row was rewritten from the log: the crashes never left a torn stripe");
    }

    /// <summary>The control: without the log the same crashes lose acknowledged blocks, so the test above can fail.</summary>
    [Theory]
    [InlineData(RaidLevel.Raid5, 5, 501)]
    [InlineData(RaidLevel.Raid6, 6, 601)]
    public async Task WithoutTheLog_TheSameLossesReadBackWrong(RaidLevel level, int members, int seed)
    {
        (var wrong, _, _) = await CrashThenLoseAsync(level, members, false, false, seed);
        Assert.True(wrong > 0, "without the log no acknowledged block read back wrong; the scenario is not biting");
    }

    /// <summary>
    /// Many RAID-6 partial writes at once, each entry a quarter of its ring, on slow members: writers wait for room and
    /// all of them end, and the data reads back. (The bed's RAID-6 volumes once stopped writing when rooms were taken in
    /// P-then-Q order; this run did not meet that cycle in three tries without the fix, so the deterministic test of the
    /// order is the next one.)
    /// </summary>
    [Fact]
    public async Task ManyRaidSixPartialWritesAtOnce_WaitForRoom_InAnOrderThatCannotDeadlock()
    {
        const int chunk = 65536, members = 6, stripes = 30;
        var bytes = MemberBytesFor(chunk, stripes)
            + OnDiskFormat.PartialParityAreaBytes(OnDiskFormat.PartialParitySlotBytes(chunk));
        var slow = Enumerable.Range(0, members)
            .Select(i => new FaultInjectingBlockDevice(new MemoryBlockDevice(bytes, $"m{i}")) { Latency = TimeSpan.FromMilliseconds(2) })
            .ToArray();
        await using RaidVolume volume = await RaidVolume.CreateAsync(
            Definition(RaidLevel.Raid6, members, chunk), slow, new RaidVolumeOptions { PartialParityLog = true });
        var stripeData = volume.Geometry.StripeDataBytes;
        var data = new byte[chunk];
        new Random(6).NextBytes(data);
        // One whole chunk of each stripe, four times over: every entry holds a quarter of its ring.
        var writes = Enumerable.Range(0, 4 * stripes).Select(i => Task.Run(async () =>
            await volume.WriteAsync((i % stripes) * stripeData + (i / stripes) * chunk, data, i + 1, false)));
        await Task.WhenAll(writes).WaitAsync(TimeSpan.FromSeconds(60));
        var back = new byte[chunk];
        await volume.ReadAsync(7 * stripeData + 2 * chunk, back);
        Assert.True(back.AsSpan().SequenceEqual(data));
    }

    /// <summary>
    /// The order rooms are taken in, deterministically: member 0's ring is full, and a writer wants rooms on members 5
    /// (its P) and 0 (its Q). It must wait for member 0 holding nothing; had it taken member 5's room first, a writer of
    /// another stripe holding member 0's room and waiting for member 5's would wait forever (the cycle that stopped the
    /// bed's RAID-6 volumes).
    /// </summary>
    [Fact]
    public async Task RoomsAreTakenInMemberOrder_SoAWaitingWriterHoldsNothingAhead()
    {
        const int length = 8192;
        var rings = Enumerable.Range(0, 6).Select(_ => new PartialParityRing(length)).ToArray();
        var blocker = await rings[0].TakeAsync(length, CancellationToken.None);
        var writer = PartialParityRing.TakeInMemberOrderAsync(rings, [5, 0], length, CancellationToken.None).AsTask();
        await Task.Delay(100);
        Assert.False(writer.IsCompleted);
        Assert.Equal(0, rings[5].InUse);
        rings[0].Give(blocker);
        var at = await writer.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([0L, 0L], at);
        Assert.Equal((1, 1), (rings[0].InUse, rings[5].InUse));
    }

    /// <summary>
    /// The first reconstruction after a member's loss reads the writers' rings: in full only where a writer wrote (a
    /// ring's first page is not zero), one page for each slot no writer used. A volume written by one writer slot reads
    /// about one ring per member, not all 64.
    /// </summary>
    [Fact]
    public async Task ReadingTheRings_SkipsTheSlotsNoWriterUsed()
    {
        const int members = 5;
        var slotBytes = OnDiskFormat.PartialParitySlotBytes(Chunk);
        var bytes = MemberBytesFor(Chunk, Stripes) + OnDiskFormat.PartialParityAreaBytes(slotBytes);
        var raw = Enumerable.Range(0, members).Select(i => new MemoryBlockDevice(bytes, $"m{i}")).ToArray();
        var options = new RaidVolumeOptions { PartialParityLog = true, WriterSlot = 7 };
        await using (RaidVolume writer = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, members, Chunk), raw, options))
        {
            for (var i = 0; i < 8; i++) await writer.WriteAsync(i * Chunk, new byte[Block], i + 1, false);
        }
        var counting = raw.Select(d => new FaultInjectingBlockDevice(d)).ToArray();
        await using RaidVolume reader = await RaidVolume.AssembleAsync(
            [null, .. counting.Skip(1)], new RaidVolumeOptions { RecoverOnAssemble = false });
        var before = counting.Sum(d => d.BytesRead);
        await reader.ReadAsync(0, new byte[Block]); // stripe 0's chunk 0 is on the missing member 0 or rebuilt anyway
        await reader.ReadAsync(reader.Geometry.StripeDataBytes, new byte[4 * Block]);
        var read = counting.Sum(d => d.BytesRead) - before;
        Assert.True(read > 0, "no member was read");
        Assert.True(
            read < (members - 1) * (2 * slotBytes + OnDiskFormat.IntentSlotCount * OnDiskFormat.PartialParityHeaderBytes),
            $"{read} bytes read for the first degraded reads; the rings of the one writer slot used are {(members - 1) * slotBytes}");
    }

    /// <summary>Another host's disk, as the engine sees it: a device behind a channel (here to memory).</summary>
    private sealed class ChannelToMemory(MemoryBlockDevice disk) : IRemoteDiskChannel
    {
        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken) =>
            disk.ReadAsync(offsetBytes, destination, cancellationToken);

        public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken) =>
            disk.WriteAsync(offsetBytes, source, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken) => disk.FlushAsync(cancellationToken);

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>
    /// RAID-5 with member 0 on this writer's host and the others behind other hosts' disk services: a one-block write
    /// logs only where the host's death could take acknowledged rows with it, i.e. where member 0 holds a data chunk the
    /// write leaves untouched; where it holds the parity or the chunk written, a crash of this host loses nothing the
    /// write-intent resync and the other members cannot give back. With a member missing, every such write logs.
    /// </summary>
    [Fact]
    public async Task RaidFive_LogsOnlyWhereThisHostHoldsAnUntouchedChunk_OrAMemberIsMissing()
    {
        const int members = 5;
        var bytes = MemberBytesFor(Chunk, Stripes)
            + OnDiskFormat.PartialParityAreaBytes(OnDiskFormat.PartialParitySlotBytes(Chunk));
        var raw = Enumerable.Range(0, members).Select(i => new MemoryBlockDevice(bytes, $"m{i}")).ToArray();
        var faulty = raw.Select(d => new FaultInjectingBlockDevice(d)).ToArray();
        IBlockDevice[] devices = [faulty[0], .. Enumerable.Range(1, members - 1).Select(
            i => new RemoteBlockDevice($"h{i + 1}:m{i}", bytes, 512, 64, new ChannelToMemory(raw[i])))];
        await using RaidVolume volume = await RaidVolume.CreateAsync(
            Definition(RaidLevel.Raid5, members, Chunk), devices, new RaidVolumeOptions { PartialParityLog = true });
        var stripeData = volume.Geometry.StripeDataBytes;
        var area = volume.Layout.MemberOffsetBytes(Stripes, 0);
        var ring = new byte[OnDiskFormat.PartialParitySlotBytes(Chunk)];

        async Task<bool> LoggedAsync(long stripe, int dataIndex, long timestamp)
        {
            var p = volume.Layout.MemberAtLogicalSlot(stripe, volume.Geometry.DataMemberCount);
            await raw[p].WriteAsync(area, new byte[ring.Length]);
            await volume.WriteAsync(stripe * stripeData + dataIndex * Chunk, new byte[Block], timestamp, false);
            await raw[p].ReadAsync(area, ring);
            return ring.AsSpan(0, 8).SequenceEqual(OnDiskFormat.PartialParityMagic);
        }

        long ts = 1;
        for (long stripe = 0; stripe < Stripes; stripe++)
        {
            for (var d = 0; d < 4; d++)
            {
                var local = Enumerable.Range(0, 4).Where(i => volume.Layout.DataMember(stripe, i) == 0).ToArray();
                // Member 0 holds an untouched data chunk of this stripe unless it holds parity or chunk d itself.
                var expected = local.Length == 1 && local[0] != d;
                Assert.True(
                    expected == await LoggedAsync(stripe, d, ts++),
                    $"stripe {stripe}, chunk {d}: logged should be {expected}");
            }
        }

        // Degraded (member 3 failed): every partial write logs, wherever this host's member lies.
        await volume.FailMemberAsync(3, "test");
        for (long stripe = 0; stripe < Stripes; stripe++)
        {
            if (volume.Layout.MemberAtLogicalSlot(stripe, 4) == 3) continue; // its log would go to the missing member
            // The chunk on this host's member if it holds one (healthy, that write would not log), else chunk 0.
            var own = Enumerable.Range(0, 4).Where(i => volume.Layout.DataMember(stripe, i) == 0).DefaultIfEmpty(0).First();
            Assert.True(await LoggedAsync(stripe, own, ts++), $"stripe {stripe}, degraded: not logged");
        }
    }

    [Fact]
    public async Task TheLogsRoom_IsGivenBack_AndAFullStripeWriteLogsNothing()
    {
        var bytes = MemberBytesFor(Chunk, Stripes)
            + OnDiskFormat.PartialParityAreaBytes(OnDiskFormat.PartialParitySlotBytes(Chunk));
        var raw = Enumerable.Range(0, 5).Select(i => new MemoryBlockDevice(bytes, $"m{i}")).ToArray();
        var counting = raw.Select(d => new FaultInjectingBlockDevice(d)).ToArray();
        await using RaidVolume volume = await RaidVolume.CreateAsync(
            Definition(RaidLevel.Raid5, 5, Chunk), counting, new RaidVolumeOptions { PartialParityLog = true });
        var area = volume.Layout.MemberOffsetBytes(Stripes, 0);
        var stripeData = volume.Geometry.StripeDataBytes;
        // Many small writes in flight at once on one stripe's parity member: they wait for room, never overflow.
        var writes = Enumerable.Range(0, 128).Select(i => volume.WriteAsync(
            (i % 4) * stripeData + Block * (i % 8), new byte[Block], i + 1, false).AsTask());
        await Task.WhenAll(writes).WaitAsync(TimeSpan.FromSeconds(60));
        var ring = new byte[OnDiskFormat.PartialParitySlotBytes(Chunk)];
        await raw[volume.Layout.MemberAtLogicalSlot(1, 4)].ReadAsync(area, ring);
        Assert.True(ring.AsSpan(0, 8).SequenceEqual(OnDiskFormat.PartialParityMagic), "no entry at the ring's start");

        // A whole-stripe write leaves no row untouched: nothing to log, the ring is not written.
        foreach (var d in raw) await d.WriteAsync(area, new byte[ring.Length]);
        await volume.WriteAsync(2 * stripeData, new byte[stripeData], 100, false);
        foreach (var d in raw)
        {
            await d.ReadAsync(area, ring);
            Assert.True(ring.AsSpan().IndexOfAnyExcept((byte)0) < 0, $"{d.Name}: a whole-stripe write logged partial parity");
        }
    }
}
