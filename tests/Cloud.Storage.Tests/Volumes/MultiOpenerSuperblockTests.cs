using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// Several openers (silos) of the same members changing member states: superblock updates re-read,
/// merge and write the next generation, so no opener's failure record is lost and a stale disk is
/// never taken back as active.
/// </summary>
public sealed class MultiOpenerSuperblockTests : IDisposable
{
    private const int Chunk = 8192;
    private const long Stripes = 16;
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-multi-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RaidVolumeOptions Opener(int slot, ISuperblockCoordinator? coordinator = null) => new()
    {
        WriterSlot = slot, RecoverAllWriterSlots = false,
        SuperblockCoordinator = coordinator ?? LocalSuperblockCoordinator.Shared,
    };

    private static async Task<byte[]> FillAsync(RaidVolume volume, Random random)
    {
        var model = new byte[volume.CapacityBytes];
        random.NextBytes(model);
        await volume.WriteAsync(0, model);
        return model;
    }

    /// <summary>Reassembly must refuse both failed disks when given, and read the model back without them.</summary>
    private static async Task AssertBothFailedAndDataIntactAsync(
        IReadOnlyList<IBlockDevice> devices,
        int x,
        int y,
        byte[] model,
        string context)
    {
        VolumeFormatException refused = await Assert.ThrowsAsync<VolumeFormatException>(
            async () => await RaidVolume.AssembleAsync(devices));
        Assert.True(
            refused.MemberIndex == x || refused.MemberIndex == y,
            $"{context}: refused member {refused.MemberIndex}, expected {x} or {y}: {refused.Message}");
        foreach (var stale in new[] { x, y })
        {
            IBlockDevice?[] withOne = devices.ToArray();
            withOne[x == stale ? y : x] = null;
            var e = await Assert.ThrowsAsync<VolumeFormatException>(
                async () => await RaidVolume.AssembleAsync(withOne));
            Assert.Equal(stale, e.MemberIndex);
        }
        IBlockDevice?[] without = devices.ToArray();
        without[x] = null;
        without[y] = null;
        await using RaidVolume v = await RaidVolume.AssembleAsync(without);
        Assert.Equal(MemberState.Failed, v.Members[x].State);
        Assert.Equal(MemberState.Failed, v.Members[y].State);
        AssertSame(model, await ReadAllAsync(v), context);
    }

    [Fact]
    public async Task StaleOpener_FailingAnotherMember_KeepsTheFirstOpenersFailure()
    {
        // The reproduction from docs/AZURE.md: A fails member 1 and writes on; B, assembled before,
        // fails member 2. Without the read-merge-write both wrote the same generation and member 1
        // came back active with A's writes missing from it.
        const int seed = 1101;
        var random = new Random(seed);
        MemoryBlockDevice[] devices = Members(4, Chunk, Stripes);
        await using (RaidVolume created =
            await RaidVolume.CreateAsync(Definition(RaidLevel.Raid6, 4, Chunk), devices)) { }
        RaidVolume a = await RaidVolume.AssembleAsync(devices, Opener(0));
        RaidVolume b = await RaidVolume.AssembleAsync(devices, Opener(1));
        var model = await FillAsync(a, random);

        await a.FailMemberAsync(1, "test: A's I/O error");
        var newer = new byte[a.CapacityBytes / 2];
        random.NextBytes(newer);
        await a.WriteAsync(0, newer);
        newer.CopyTo(model, 0);
        await b.FailMemberAsync(2, "test: B's I/O error");
        Assert.Equal(MemberState.Failed, b.Members[1].State); // B adopted A's failure while updating.
        await a.DisposeAsync();
        await b.DisposeAsync();

        await AssertBothFailedAndDataIntactAsync(devices, 1, 2, model, $"seed {seed}");
    }

    public static TheoryData<int> Seeds() => [.. Enumerable.Range(0, 12).Select(i => 2200 + i)];

    [Theory]
    [MemberData(nameof(Seeds))]
    public async Task TwoOpenersWithoutACommonCoordinator_FailingDifferentMembersConcurrently_LoseNeitherFailure(
        int seed)
    {
        // Each opener has its own coordinator, as two processes with no cluster-wide one: only the
        // merge and the conditional superblock writes of the memory device keep both failures.
        var random = new Random(seed);
        MemoryBlockDevice[] devices = Members(5, Chunk, Stripes);
        await using (RaidVolume created =
            await RaidVolume.CreateAsync(Definition(RaidLevel.Raid6, 5, Chunk), devices)) { }
        RaidVolume a = await RaidVolume.AssembleAsync(devices, Opener(0, new LocalSuperblockCoordinator()));
        RaidVolume b = await RaidVolume.AssembleAsync(devices, Opener(1, new LocalSuperblockCoordinator()));
        var model = await FillAsync(a, random);
        int x = random.Next(5), y = (x + 1 + random.Next(4)) % 5;

        await Task.WhenAll(
            Task.Run(async () => await a.FailMemberAsync(x, "A")),
            Task.Run(async () => await b.FailMemberAsync(y, "B")));
        // Both go on writing; each may still think the other's member active until it looks again.
        var more = new byte[a.CapacityBytes];
        random.NextBytes(more);
        var half = (int)(a.CapacityBytes / 2);
        await Task.WhenAll(Task.Run(async () => await a.WriteAsync(0, more.AsMemory(0, half))),
            Task.Run(async () => { await b.RefreshMembersAsync(); await b.WriteAsync(half, more.AsMemory(half)); }));
        more.CopyTo(model, 0);
        await a.DisposeAsync();
        await b.DisposeAsync();

        await AssertBothFailedAndDataIntactAsync(devices, x, y, model, $"seed {seed}, A failed {x}, B failed {y}");
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public async Task TwoOpenersOfFileMembers_FailingDifferentMembersConcurrently_LoseNeitherFailure(int seed)
    {
        // Files have no conditional write: the process-wide coordinator serialises the two updates.
        var random = new Random(seed);
        IBlockDevice[] Open(long capacityBytes = 0) =>
            Enumerable.Range(
                0,
                5).Select(i => (IBlockDevice)new FileBlockDevice(
                    Path.Combine(_dir, $"s{seed}-d{i}.img"), capacityBytes)).ToArray();
        IBlockDevice[] created = Open(MemberBytesFor(Chunk, Stripes));
        await using (RaidVolume v = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid6, 5, Chunk), created)) { }
        IBlockDevice[] handlesA = Open(), handlesB = Open(), handlesC = Open();
        RaidVolume a = await RaidVolume.AssembleAsync(handlesA, Opener(0));
        RaidVolume b = await RaidVolume.AssembleAsync(handlesB, Opener(1));
        var model = await FillAsync(a, random);
        int x = random.Next(5), y = (x + 1 + random.Next(4)) % 5;

        await Task.WhenAll(
            Task.Run(async () => await a.FailMemberAsync(x, "A")),
            Task.Run(async () => await b.FailMemberAsync(y, "B")));
        Assert.True(a.Members[y].State == MemberState.Failed || b.Members[x].State == MemberState.Failed,
            $"seed {seed}: the later update must have adopted the earlier one's failure");
        var more = new byte[a.CapacityBytes];
        random.NextBytes(more);
        await a.RefreshMembersAsync();
        await a.WriteAsync(0, more);
        more.CopyTo(model, 0);
        await a.DisposeAsync();
        await b.DisposeAsync();

        await AssertBothFailedAndDataIntactAsync(handlesC, x, y, model, $"seed {seed}, A failed {x}, B failed {y}");
        foreach (IBlockDevice d in created.Concat(handlesA).Concat(handlesB).Concat(handlesC)) await d.DisposeAsync();
    }

    [Fact]
    public async Task StaleOpener_Refreshing_StopsWritingAFailedMember_AndAttachesItsRebuiltReplacement()
    {
        const int seed = 3301;
        var random = new Random(seed);
        MemoryBlockDevice[] devices = Members(4, Chunk, Stripes);
        await using (RaidVolume created =
            await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 4, Chunk), devices)) { }
        RaidVolume a = await RaidVolume.AssembleAsync(devices, Opener(0));
        RaidVolume b = await RaidVolume.AssembleAsync(devices, Opener(1));
        var model = await FillAsync(a, random);

        await a.FailMemberAsync(3, "test");
        Assert.Equal(MemberState.Active, b.Members[3].State); // B has not looked yet.
        await b.RefreshMembersAsync();
        Assert.Equal(MemberState.Failed, b.Members[3].State);
        var before = devices[3].Contents.ToArray();
        var data = new byte[b.CapacityBytes];
        random.NextBytes(data);
        await b.WriteAsync(0, data);
        data.CopyTo(model, 0);
        await b.FlushAsync();
        Assert.True(before.AsSpan().SequenceEqual(devices[3].Contents.Span), "B wrote to the member A failed");

        // A replaces and rebuilds member 3; B, refreshing without the new disk, detaches the position,
        // and with it attaches the new disk as active.
        var replacement = new MemoryBlockDevice(devices[0].CapacityBytes, "m3-new");
        await a.ReplaceMemberAsync(3, replacement);
        await a.RebuildAsync();
        Assert.Equal(VolumeHealth.Healthy, a.Health);
        await b.RefreshMembersAsync();
        Assert.Equal(MemberState.Missing, b.Members[3].State);
        Assert.Null(b.Members[3].DeviceName);
        await b.RefreshMembersAsync([null, null, null, replacement]);
        Assert.Equal(MemberState.Active, b.Members[3].State);
        Assert.Equal("m3-new", b.Members[3].DeviceName);
        Assert.Equal(VolumeHealth.Healthy, b.Health);
        random.NextBytes(data);
        await b.WriteAsync(0, data);
        data.CopyTo(model, 0);
        await a.DisposeAsync();
        await b.DisposeAsync();

        // Every member, the replacement included, is in step: reads without member 0 reconstruct from it.
        await using RaidVolume c = await RaidVolume.AssembleAsync([null, devices[1], devices[2], replacement]);
        AssertSame(model, await ReadAllAsync(c), $"seed {seed}");
    }

    /// <summary>
    /// A coordinator that publishes an update the way a cluster does: every opener, the updater included, re-reads the
    /// superblocks before the update returns.
    /// </summary>
    private sealed class RereadingCoordinator : ISuperblockCoordinator
    {
        public List<RaidVolume> Openers { get; } = [];

        public int Publications;

        public ValueTask<IAsyncDisposable> AcquireAsync(Guid volumeId, CancellationToken cancellationToken) =>
            LocalSuperblockCoordinator.Shared.AcquireAsync(volumeId, cancellationToken);

        public async ValueTask PublishAsync(Guid volumeId, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Publications);
            foreach (RaidVolume opener in Openers) await opener.RefreshMembersAsync(null, cancellationToken);
        }
    }

    [Fact]
    public async Task AnUpdate_IsAdoptedByEveryOpenerBeforeItReturns_AndTheUpdatersOwnReReadDoesNotWaitForIt()
    {
        // A cluster publishes an update to every silo, the updating one too (it may have a second engine of the
        // volume open). Published while the updater still held its update gate, the updater's own re-read would wait
        // for the update that waits for it; published after, the other opener has adopted the failure when the
        // update returns, without a timed refresh of its own.
        MemoryBlockDevice[] devices = Members(4, Chunk, Stripes);
        await using (RaidVolume created =
            await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 4, Chunk), devices)) { }
        var coordinator = new RereadingCoordinator();
        RaidVolumeOptions Options(int slot) => new()
        {
            WriterSlot = slot, RecoverAllWriterSlots = false, SuperblockCoordinator = coordinator,
            MemberRefreshInterval = Timeout.InfiniteTimeSpan,
        };
        await using RaidVolume a = await RaidVolume.AssembleAsync(devices, Options(0));
        await using RaidVolume b = await RaidVolume.AssembleAsync(devices, Options(1));
        coordinator.Openers.AddRange([a, b]);

        await a.FailMemberAsync(1, "failed by the test").AsTask().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(1, coordinator.Publications);
        Assert.Equal(MemberState.Failed, b.Members[1].State);
        Assert.Equal(a.Generation, b.Generation);
    }

    [Fact]
    public async Task Assembly_WithRecoverOnAssembleOff_LeavesTheIntentMarksForTheHostToRecoverUnderItsLocks()
    {
        // In a cluster the engine must not resync at assembly: another silo may be writing the marked stripes, and a
        // resync rewrites their parity from the data it reads. The host recovers them under its locks instead.
        MemoryBlockDevice[] devices = Members(4, Chunk, Stripes);
        await using (RaidVolume created =
            await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 4, Chunk), devices)) { }
        RaidVolume writer = await RaidVolume.AssembleAsync(devices, Opener(1));
        await writer.WriteAsync(0, new byte[Block]);
        // The writer is abandoned without a flush, as a killed process leaves it: its mark stays on the members.

        await using RaidVolume host = await RaidVolume.AssembleAsync(
            devices, new RaidVolumeOptions { WriterSlot = 1, RecoverAllWriterSlots = false, RecoverOnAssemble = false });
        Assert.NotEmpty(await host.MarkedStripesOfSlotAsync(1));
        Assert.True(await host.RecoverWriterSlotAsync(1) > 0);
        Assert.Empty(await host.MarkedStripesOfSlotAsync(1));
    }
}
