using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// DESIGN.md invariant 4: after a crash in the middle of stripe updates and a restart, no stripe's
/// parity disagrees with its data. The crash is a <see cref="CrashPoint"/> shared by the members:
/// after a budget of member writes, one write lands torn and nothing else reaches the disks, then
/// the volume is abandoned without flushing or disposing, as a killed process would leave it.
/// </summary>
public sealed class WriteHoleTests
{
    private static async Task<(long Mismatches, long ChecksumErrors, string Context)> CrashAndRecoverAsync(
        RaidLevel level,
        int members,
        int seed,
        int budget,
        bool intentLog)
    {
        var random = new Random(seed);
        const int chunk = 8192;
        MemoryBlockDevice[] raw = Members(members, chunk, 16);
        var faulty = raw.Select(d => new FaultInjectingBlockDevice(d)).ToArray();
        var options = new RaidVolumeOptions { WriteIntentLog = intentLog };
        RaidVolume volume = await RaidVolume.CreateAsync(Definition(level, members, chunk), faulty, options);
        var model = new byte[volume.CapacityBytes];
        await RandomWritesAsync(volume, model, random, 20);
        await volume.FlushAsync();

        // Partial-stripe writes racing each other; the crash lands somewhere inside them.
        var crash = new CrashPoint(budget, seed);
        foreach (FaultInjectingBlockDevice f in faulty) f.Crash = crash;
        var inFlight = new List<Task>();
        var blocks = volume.CapacityBytes / Block;
        for (var i = 0; i < 8; i++)
        {
            var length = random.Next(1, 5);
            var first = random.NextInt64(blocks - length);
            var data = new byte[length * Block];
            random.NextBytes(data);
            inFlight.Add(Task.Run(async () => await volume.WriteAsync(first * Block, data)));
        }
        try { await Task.WhenAll(inFlight); } catch (IOException) { } // writes cut short by the crash
        // The process is gone: the volume object is dropped; the disks keep what landed.

        await using RaidVolume recovered = await RaidVolume.AssembleAsync(raw, options);
        ScrubReport report = await recovered.ScrubAsync(repair: false);
        return (report.ParityMismatches, report.ChecksumErrors, $"seed {seed}, budget {budget}, {level} x{members}, crashed {crash.HasCrashed}");
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 4, 401)]
    [InlineData(RaidLevel.Raid6, 5, 402)]
    [InlineData(RaidLevel.Raid1, 2, 403)]
    [InlineData(RaidLevel.Raid0, 3, 404)]
    public async Task CrashMidStripeUpdate_ThenAssemble_ScrubFindsNoMismatch(RaidLevel level, int members, int seed)
    {
        for (var budget = 0; budget < 24; budget += 1)
        {
            (var mismatches, var checksumErrors, var context) = await CrashAndRecoverAsync(
                level, members, seed + budget, budget, intentLog: true);
            Assert.True(
                mismatches == 0 && checksumErrors == 0,
                $"{context}: {mismatches} parity mismatches, {checksumErrors} checksum errors after recovery");
        }
    }

    /// <summary>
    /// The control: without the intent bitmap the same crashes do leave stripes inconsistent, so the test above can
    /// fail.
    /// </summary>
    [Fact]
    public async Task WithoutIntentLog_TheSameCrashes_LeaveInconsistentStripes()
    {
        long damaged = 0;
        for (var budget = 0; budget < 24; budget++)
        {
            (var mismatches, var checksumErrors, _) = await CrashAndRecoverAsync(
                RaidLevel.Raid5, 4, 401 + budget, budget, intentLog: false);
            damaged += mismatches + checksumErrors;
        }
        Assert.True(
            damaged > 0, "crashes without the intent log left no inconsistency; the crash simulation is not biting");
    }

    [Fact]
    public async Task CleanShutdown_LeavesNoDirtyRegions()
    {
        (RaidVolume volume, MemoryBlockDevice[] devices) = await CreateAsync(RaidLevel.Raid5, 3, 4096, 8);
        await volume.WriteAsync(0, new byte[3 * Block]);
        Assert.True(volume.DirtyIntentRegions > 0);
        await volume.FlushAsync();
        Assert.Equal(0, volume.DirtyIntentRegions);
        await volume.WriteAsync(0, new byte[Block]);
        await volume.DisposeAsync();
        // Nothing left to resync: the bitmap slot is clear on every member.
        await using RaidVolume again = await RaidVolume.AssembleAsync(devices);
        Assert.Equal(0, await again.RecoverWriterSlotAsync(0));
    }

    [Fact]
    public async Task Writers_UseTheirOwnSlots_AndRecoveryOfOneSlotLeavesTheOtherAlone()
    {
        MemoryBlockDevice[] devices = Members(3, 4096, 8);
        RaidVolume a = await RaidVolume.CreateAsync(
            Definition(RaidLevel.Raid5, 3, 4096), devices, new RaidVolumeOptions { WriterSlot = 0 });
        await a.DisposeAsync();
        var optionsB = new RaidVolumeOptions { WriterSlot = 5, RecoverAllWriterSlots = false };
        RaidVolume b = await RaidVolume.AssembleAsync(devices, optionsB);
        await b.WriteAsync(0, new byte[Block]); // marks slot 5, never flushed: b "dies"
        var optionsC = new RaidVolumeOptions { WriterSlot = 6, RecoverAllWriterSlots = false };
        await using RaidVolume c = await RaidVolume.AssembleAsync(devices, optionsC);
        Assert.Equal(0, await c.RecoverWriterSlotAsync(6));
        Assert.True(await c.RecoverWriterSlotAsync(5) >= 1, "slot 5's marked stripe was not resynced");
        Assert.Equal(0, await c.RecoverWriterSlotAsync(5));
    }
}
