using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

/// <summary>
/// Member changes made by one silo's engine while the others have the volume open: the superblock lease serialises
/// them cluster-wide, and the changing silo makes every other silo re-read the member table before it returns.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class MemberChangeTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    private IRaidWorkerGrain Worker(int silo)
        => Cloud.Cluster.Client.GetGrain<IRaidWorkerGrain>(Cloud.Silos[silo].Name);

    [Fact]
    public async Task TwoSilosFailDifferentMembersAtOnce_EverySiloSeesBoth_AndReassemblyKeepsThemFailed()
    {
        var name = "fail2-" + Guid.NewGuid().ToString("N")[..6];
        await Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 2 << 20, VolumeLevel.Raid6, 5, 16 << 10, false));
        var before = Blocks.Pattern(768 << 10, 71);
        await Cloud.FrontEnd(Cloud.Silos[2]).WriteAsync(name, 0, before, forceUnitAccess: true);
        // Every silo opens the volume (its own engine over the same member files).
        for (var s = 0; s < 3; s++)
            Assert.Equal(VolumeHealthState.Healthy, (await Worker(s).GetVolumeStatusAsync(name)).Health);

        await Task.WhenAll(
            Worker(0).FailMemberAsync(name, 1, "test: silo 0"), Worker(1).FailMemberAsync(name, 3, "test: silo 1"));

        // No silo reopened: the third one knows both failures only because it was told to re-read the superblocks.
        for (var s = 0; s < 3; s++)
        {
            var disks = (await Worker(s).GetVolumeStatusAsync(name)).Disks;
            Assert.True(disks[1].State == DiskState.Failed && disks[3].State == DiskState.Failed,
                $"silo {Cloud.Silos[s].Name} sees {string.Join(",", disks.Select(d => d.State))}");
        }

        var after = Blocks.Pattern(256 << 10, 72);
        await Cloud.FrontEnd(Cloud.Silos[0]).WriteAsync(name, 128 << 10, after, forceUnitAccess: true);
        var expected = before.ToArray();
        after.CopyTo(expected, 128 << 10);

        // Reassembled from the superblocks on every silo: the failed members stay failed, and every byte reads back.
        for (var s = 0; s < 3; s++) await Worker(s).CloseVolumeAsync(name);
        for (var s = 0; s < 3; s++)
        {
            var disks = (await Worker(s).GetVolumeStatusAsync(name)).Disks;
            Assert.Equal(
                [DiskState.Active, DiskState.Failed, DiskState.Active, DiskState.Failed, DiskState.Active],
                disks.Select(d => d.State));
            Assert.Equal(expected, await Cloud.FrontEnd(Cloud.Silos[s]).ReadAsync(name, 0, expected.Length));
        }
    }

    [Fact]
    public async Task OneSiloFailsAMemberWhileOthersWrite_NoStaleMemberIsUsed_AndEveryWriteReadsBack()
    {
        var name = "failw-" + Guid.NewGuid().ToString("N")[..6];
        const int blocks = 64;
        await Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 1 << 20, VolumeLevel.Raid5, 4, 16 << 10, false));
        var expected = new byte[blocks][];
        for (var b = 0; b < blocks; b++)
        {
            expected[b] = Blocks.Pattern(4096, 1000 + b);
            await Cloud.FrontEnd(Cloud.Silos[b % 3]).WriteAsync(name, 4096L * b, expected[b], forceUnitAccess: false);
        }
        for (var s = 0; s < 3; s++) await Worker(s).GetVolumeStatusAsync(name);

        // Silos 1 and 2 keep writing (each its own blocks, several rounds) while silo 0 fails member 2 midway.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task WriteRoundsAsync(int silo)
        {
            for (var round = 0; round < 6; round++)
            {
                if (round == 2) started.TrySetResult();
                for (var b = silo; b < blocks; b += 2)
                {
                    var data = Blocks.Pattern(4096, (round + 1) * 10_000 + b);
                    await Cloud.FrontEnd(Cloud.Silos[silo]).WriteAsync(name, 4096L * b, data, forceUnitAccess: true);
                    expected[b] = data;
                }
            }
        }
        var writers = new[] { WriteRoundsAsync(1), WriteRoundsAsync(2) };
        await started.Task;
        await Worker(0).FailMemberAsync(name, 2, "test: failed while others write");
        await Task.WhenAll(writers);

        for (var s = 0; s < 3; s++)
            Assert.Equal(DiskState.Failed, (await Worker(s).GetVolumeStatusAsync(name)).Disks[2].State);
        for (var s = 0; s < 3; s++) await Worker(s).CloseVolumeAsync(name);
        for (var s = 0; s < 3; s++)
        {
            var status = await Worker(s).GetVolumeStatusAsync(name);
            Assert.Equal(DiskState.Failed, status.Disks[2].State);
            Assert.Equal(VolumeHealthState.Degraded, status.Health);
            for (var b = 0; b < blocks; b++)
            {
                var read = await Cloud.FrontEnd(Cloud.Silos[s]).ReadAsync(name, 4096L * b, 4096);
                Assert.True(expected[b].SequenceEqual(read), $"block {b} read from {Cloud.Silos[s].Name}");
            }
        }
        Assert.Equal(0, (await Cloud.Client.ScrubAsync(name, repair: false)).Mismatches);
    }
}
