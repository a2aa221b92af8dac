using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// DESIGN.md invariant 5: RAID-5 survives any one disk loss, RAID-6 any two, and a rebuild restores redundancy.
/// </summary>
public sealed class DegradedTests
{
    public static TheoryData<RaidLevel, int, int, int> Cases() => new()
    {
        { RaidLevel.Raid5, 3, 4096, 101 }, { RaidLevel.Raid5, 5, 8192, 102 },
        { RaidLevel.Raid6, 4, 4096, 103 }, { RaidLevel.Raid6, 6, 8192, 104 },
        { RaidLevel.Raid1, 3, 4096, 105 },
    };

    private static IEnumerable<int[]> MissingSets(int members, int maxFailed)
    {
        for (var a = 0; a < members; a++)
        {
            yield return [a];
            if (maxFailed >= 2)
                for (var b = a + 1; b < members; b++) yield return [a, b];
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task EveryAllowedSetOfMissingMembers_ReadsBackIdenticalData_AndAcceptsWrites(
        RaidLevel level,
        int members,
        int chunk,
        int seed)
    {
        var random = new Random(seed);
        (RaidVolume volume, MemoryBlockDevice[] devices) = await CreateAsync(
            level, members, chunk, stripes: 2 * members);
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, random, 40);
        var maxFailed = Math.Min(2, volume.Geometry.MaxFailedMembers);
        await volume.DisposeAsync();
        var pristine = devices.Select(d => d.Contents.ToArray()).ToArray();

        foreach (var missing in MissingSets(members, maxFailed))
        {
            var context = $"seed {seed}, {level} x{members}, missing [{string.Join(',', missing)}]";
            for (var i = 0; i < members; i++) pristine[i].CopyTo(devices[i].Contents);
            IBlockDevice?[] given = devices.Select((d, i) => missing.Contains(i) ? null : (IBlockDevice)d).ToArray();
            await using RaidVolume degraded = await RaidVolume.AssembleAsync(given);
            Assert.Equal(VolumeHealth.Degraded, degraded.Health);
            AssertSame(model, await ReadAllAsync(degraded), context);

            // Writes while degraded (rmw/rcw impossible on missing members: reconstruct-writes) read back too.
            var local = (byte[])model.Clone();
            await RandomWritesAsync(degraded, local, new Random(seed * 31 + missing.Sum()), 15);
            AssertSame(local, await ReadAllAsync(degraded), context + " after degraded writes");
        }
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 4, 201)]
    [InlineData(RaidLevel.Raid6, 5, 202)]
    [InlineData(RaidLevel.Raid1, 2, 203)]
    public async Task DiskDies_DuringIo_ThenRebuildOntoReplacement_WhileWriting_RestoresRedundancy(
        RaidLevel level,
        int members,
        int seed)
    {
        var random = new Random(seed);
        const int chunk = 8192;
        const long stripes = 16;
        MemoryBlockDevice[] raw = Members(members, chunk, stripes);
        var faulty = raw.Select((d, i) => new FaultInjectingBlockDevice(d, seed + i)).ToArray();
        await using RaidVolume volume = await RaidVolume.CreateAsync(Definition(level, members, chunk), faulty);
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, random, 30);

        // The disk dies: the next I/O that touches it fails the member automatically.
        faulty[1].IsDead = true;
        AssertSame(model, await ReadAllAsync(volume), $"seed {seed} after disk 1 died");
        await RandomWritesAsync(volume, model, random, 10);
        Assert.Equal(MemberState.Failed, volume.Members[1].State);
        Assert.Equal(VolumeHealth.Degraded, volume.Health);

        var replacement = new MemoryBlockDevice(MemberBytesFor(chunk, stripes), "replacement");
        await volume.ReplaceMemberAsync(1, replacement);
        Assert.Equal(VolumeHealth.Rebuilding, volume.Health);
        var reports = new List<RebuildProgress>();
        Task rebuild = volume.RebuildAsync(new SyncProgress<RebuildProgress>(reports.Add)).AsTask();
        await RandomWritesAsync(volume, model, random, 20); // I/O continues during the rebuild
        await rebuild;
        Assert.Equal(VolumeHealth.Healthy, volume.Health);
        Assert.Equal(stripes, reports[^1].StripesDone);
        Assert.True(
            reports.Select(r => r.StripesDone).SequenceEqual(reports.Select(r => r.StripesDone).Order()),
            "progress went backwards");

        // Redundancy restored: lose a different member and everything still reads.
        faulty[members - 1].IsDead = true;
        AssertSame(model, await ReadAllAsync(volume), $"seed {seed} after rebuild and losing member {members - 1}");
        faulty[members - 1].ClearFaults();
        ScrubReport scrub = await volume.ScrubAsync(repair: false);
        Assert.Equal(0, scrub.ParityMismatches + scrub.ChecksumErrors);
    }

    [Fact]
    public async Task TooManyFailures_FailTheVolume_WithAClearError()
    {
        (RaidVolume volume, MemoryBlockDevice[] _) = await CreateAsync(RaidLevel.Raid5, 4, 4096, 4);
        await volume.FailMemberAsync(0, "test");
        await volume.FailMemberAsync(2, "test");
        Assert.Equal(VolumeHealth.Failed, volume.Health);
        var e = await Assert.ThrowsAsync<VolumeDataLossException>(() => volume.ReadAsync(0, new byte[4096]).AsTask());
        Assert.Contains("member 0", e.Message);
    }

    [Fact]
    public async Task Raid0_RefusesReplacement_BecauseNothingCanBeRebuilt()
    {
        (RaidVolume volume, MemoryBlockDevice[] _) = await CreateAsync(RaidLevel.Raid0, 2, 4096, 4);
        await Assert.ThrowsAsync<InvalidOperationException>(
            () => volume.ReplaceMemberAsync(0, new MemoryBlockDevice(MemberBytesFor(4096, 4))).AsTask());
    }

    /// <summary>Reports synchronously, in order (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) { lock (this) report(value); }
    }
}

public sealed class RebuildResumeTests
{
    [Fact]
    public async Task InterruptedRebuild_ResumesFromItsCheckpoint_AfterReassembly()
    {
        const int seed = 601;
        const int chunk = 4096;
        const long stripes = 24;
        var options = new RaidVolumeOptions { RebuildCheckpointStripes = 4 };
        MemoryBlockDevice[] devices = Members(4, chunk, stripes);
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(RaidLevel.Raid5, 4, chunk), devices, options);
        var model = new byte[volume.CapacityBytes];
        new Random(seed).NextBytes(model);
        await volume.WriteAsync(0, model);
        await volume.FailMemberAsync(3, "test");
        var replacement = new MemoryBlockDevice(MemberBytesFor(chunk, stripes), "new3");
        await volume.ReplaceMemberAsync(3, replacement);

        using var stop = new CancellationTokenSource();
        var progress = new InlineProgress(p => { if (p.StripesDone == 10) stop.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => volume.RebuildAsync(progress, stop.Token).AsTask());
        await volume.DisposeAsync();

        await using RaidVolume again = await RaidVolume.AssembleAsync(
            [devices[0], devices[1], devices[2], replacement], options);
        MemberInfo member = again.Members[3];
        Assert.Equal(MemberState.Rebuilding, member.State);
        Assert.Equal(8, member.RebuildCursorStripes); // the last checkpoint before the interruption
        long firstReported = -1;
        await again.RebuildAsync(new InlineProgress(p => { if (firstReported < 0) firstReported = p.StripesDone; }));
        Assert.Equal(9, firstReported);
        Assert.Equal(VolumeHealth.Healthy, again.Health);
        // Every block now reads back right even without member 0.
        await again.FailMemberAsync(0, "prove redundancy");
        VolumeFixture.AssertSame(model, await ReadAllAsync(again), $"seed {seed}");
    }

    private sealed class InlineProgress(Action<RebuildProgress> report) : IProgress<RebuildProgress>
    {
        public void Report(RebuildProgress value) => report(value);
    }
}
