using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;

namespace Cloud.Grains.Tests;

/// <summary>
/// 512-byte I/O (issue 13, item 6): writes, reads and trims at any sector, served over the engine's 4 KiB blocks by
/// reading and rewriting the block a request covers only in part, without losing a concurrent write to the block's
/// other sectors.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class SectorWriteTests(SharedClusterFixture fixture)
{
    private const int Sector = VolumeMath.SectorSizeBytes;
    private const int Block = VolumeMath.BlockSizeBytes;

    /// <summary>Bound on one round of the concurrent test; a round that takes longer has hung.</summary>
    private static readonly TimeSpan RoundTimeout = TimeSpan.FromSeconds(30);

    private CloudCluster Cloud => fixture.Cloud;

    private async Task<VolumeInfo> NewVolumeAsync(string prefix, long sizeBytes = 4 << 20) =>
        await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec(
                prefix + Guid.NewGuid().ToString("N")[..6], sizeBytes, VolumeLevel.Raid5, 3, 64 << 10,
                Durable: false));

    [Fact]
    public async Task SectorWrites_AtOddSectors_ReadBackFromEverySilo_AndKeepTheBlocksOtherSectors()
    {
        var v = await NewVolumeAsync("sect-");
        const int imageBytes = 256 << 10;
        var image = Blocks.Pattern(imageBytes, seed: 11);
        await Cloud.FrontEnd(Cloud.Silos[0]).WriteAsync(v.Name, 0, image, forceUnitAccess: false);

        // One sector at odd sectors of different blocks; three sectors across a block boundary; a head and a tail
        // around whole blocks; the last sector of a chunk; each from a different silo.
        (long Offset, int Length)[] writes =
        [
            (1 * Sector, Sector),
            (11 * Sector, Sector),
            (7 * Sector + Block, 3 * Sector),
            (3 * Sector + 4 * Block, 2 * Block + Sector),
            ((64 << 10) - Sector, Sector),
            ((64 << 10) + 5 * Sector, Sector),
        ];
        for (var i = 0; i < writes.Length; i++)
        {
            var (offset, length) = writes[i];
            var data = Blocks.Pattern(length, seed: 100 + i);
            await Cloud.FrontEnd(Cloud.Silos[i % Cloud.Silos.Count]).WriteAsync(v.Name, offset, data, false);
            data.CopyTo(image.AsSpan((int)offset));
        }

        foreach (var silo in Cloud.Silos)
        {
            var fe = Cloud.FrontEnd(silo);
            Assert.Equal(image, await fe.ReadAsync(v.Name, 0, imageBytes));
            foreach (var (offset, length) in writes)
                Assert.Equal(image.AsSpan((int)offset, length).ToArray(), await fe.ReadAsync(v.Name, offset, length));
            // A read that starts and ends inside blocks, across several.
            Assert.Equal(
                image.AsSpan(5 * Sector, 3 * Block).ToArray(), await fe.ReadAsync(v.Name, 5 * Sector, 3 * Block));
        }
    }

    [Fact]
    public async Task Trim_OfPartialBlocks_ZeroesOnlyItsSectors()
    {
        var v = await NewVolumeAsync("strim-");
        var image = Blocks.Pattern(64 << 10, seed: 12);
        var fe = Cloud.FrontEnd(Cloud.Silos[1]);
        await fe.WriteAsync(v.Name, 0, image, false);

        // Within one block; across one block boundary; a head, a whole block and a tail.
        (long Offset, int Length)[] trims = [(Sector, 2 * Sector), (7 * Sector + Block, 2 * Sector),
            (3 * Sector + 4 * Block, 2 * Block)];
        foreach (var (offset, length) in trims)
        {
            await fe.TrimAsync(v.Name, offset, length);
            image.AsSpan((int)offset, length).Clear();
        }
        foreach (var silo in Cloud.Silos)
            Assert.Equal(image, await Cloud.FrontEnd(silo).ReadAsync(v.Name, 0, image.Length));
    }

    /// <summary>
    /// Two first servers (two silos) write different sectors of one block at the same moment, round after round: the
    /// block must hold both. Fails when the edge block is read before the older version settled (without
    /// <see cref="LockRequest.PendingBelow"/>, or with the timestamp taken after the read): both first servers then
    /// patch the same old block, and the newer whole block drops the older write's sector.
    /// </summary>
    [Fact]
    public async Task ConcurrentSubBlockWrites_ToDifferentSectorsOfOneBlock_FromTwoSilos_BothSurvive()
    {
        const int rounds = 40;
        var v = await NewVolumeAsync("sconc-");
        var left = Cloud.FrontEnd(Cloud.Silos[0]);
        var right = Cloud.FrontEnd(Cloud.Silos[1]);
        var expected = new byte[Block];
        await left.WriteAsync(v.Name, Block, expected, false);
        for (var round = 0; round < rounds; round++)
        {
            // Different sectors each round, so that a lost write shows as a stale sector, not as an equal one.
            var leftSector = round % 4;
            var rightSector = 4 + (round * 3 % 4);
            var leftData = Blocks.Pattern(Sector, seed: 1000 + round);
            var rightData = Blocks.Pattern(Sector, seed: 2000 + round);
            var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var a = Task.Run(async () =>
            {
                await go.Task;
                await left.WriteAsync(v.Name, Block + leftSector * Sector, leftData, false);
            });
            var b = Task.Run(async () =>
            {
                await go.Task;
                await right.WriteAsync(v.Name, Block + rightSector * Sector, rightData, false);
            });
            go.SetResult();
            await Task.WhenAll(a, b).WaitAsync(RoundTimeout);
            leftData.CopyTo(expected.AsSpan(leftSector * Sector));
            rightData.CopyTo(expected.AsSpan(rightSector * Sector));

            var read = await Cloud.FrontEnd(Cloud.Silos[2]).ReadAsync(v.Name, Block, Block);
            for (var s = 0; s < Block / Sector; s++)
                Assert.True(
                    read.AsSpan(s * Sector, Sector).SequenceEqual(expected.AsSpan(s * Sector, Sector)),
                    $"round {round}: sector {s} of the block is not the last write to it " +
                    $"(left wrote sector {leftSector}, right wrote sector {rightSector})");
        }
    }

    [Fact]
    public async Task Sdk_WritesAndReads512Bytes_AtAnOddSector()
    {
        var v = await NewVolumeAsync("ssdk-");
        var volume = await Cloud.Client.OpenVolumeAsync(v.Name);
        var around = Blocks.Pattern(2 * Block, seed: 13);
        await volume.WriteAsync(0, around);
        var data = Blocks.Pattern(Sector, seed: 14);
        await volume.WriteAsync(9 * Sector, data);
        var back = new byte[Sector];
        await volume.ReadAsync(9 * Sector, back);
        Assert.Equal(data, back);
        data.CopyTo(around.AsSpan(9 * Sector));
        var whole = new byte[2 * Block];
        await volume.ReadAsync(0, whole);
        Assert.Equal(around, whole);

        var ex = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => volume.WriteAsync(100, new byte[Sector]));
        Assert.Contains("offset must be a multiple of 512", ex.Message);
        ex = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => volume.ReadAsync(Sector, new byte[100]));
        Assert.Contains("length must be a multiple of 512", ex.Message);
    }

    [Fact]
    public async Task FrontEnd_RefusesARangeNotOnSectors_NamingTheValue()
    {
        var v = await NewVolumeAsync("sbad-");
        var fe = Cloud.FrontEnd(Cloud.Silos[0]);
        var ex = await Assert.ThrowsAsync<CloudRequestException>(() => fe.WriteAsync(v.Name, 700, new byte[Sector], false));
        Assert.Equal("offset 700 is not allowed; use a multiple of 512 from 0", ex.Message);
        ex = await Assert.ThrowsAsync<CloudRequestException>(() => fe.ReadAsync(v.Name, 0, 1000));
        Assert.Equal("length 1000 is not allowed; use a positive multiple of 512", ex.Message);
        ex = await Assert.ThrowsAsync<CloudRequestException>(() => fe.TrimAsync(v.Name, Sector, 10));
        Assert.Equal("length 10 is not allowed; use a positive multiple of 512", ex.Message);
    }

    [Fact]
    public async Task PendingBelow_WaitsForOlderVersionsOnly_NotForTheCallersOwn()
    {
        var lockGrain = Cloud.Grains(Cloud.Silos[0]).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");
        var holder = Cloud.Silos[1].SiloAddress.ToParsableString();
        var older = await lockGrain.NextTimestampAsync(0, 0, holder);
        var own = await lockGrain.NextTimestampAsync(0, 0, holder);
        var acquire = lockGrain.AcquireAsync(
            new LockRequest(0, 0, LockMode.Shared, holder, TimeSpan.FromMinutes(1), true, own.Timestamp));
        // A round trip to the grain after the request: it has seen the request and still waits for the older one.
        Assert.Equal(2, (await lockGrain.GetControlAsync()).PendingWrites);
        Assert.False(acquire.IsCompleted, "the lock was granted while an older version was pending");

        await lockGrain.SettleAsync([older.Timestamp]);
        var grant = await acquire.WaitAsync(RoundTimeout);
        Assert.Equal(1, (await lockGrain.GetControlAsync()).PendingWrites);
        await lockGrain.ReleaseAsync(grant.FencingToken);
        await lockGrain.SettleAsync([own.Timestamp]);

        await Assert.ThrowsAsync<CloudRequestException>(
            () => lockGrain.AcquireAsync(new LockRequest(0, 0, LockMode.Shared, holder, TimeSpan.FromMinutes(1), false, 5)));
    }
}
