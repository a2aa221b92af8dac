using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

public sealed class WinningBlocksTests
{
    private static BatchCopy Copy(long firstBlock, int blocks, long timestamp, bool fua = false)
        => new(firstBlock, blocks, timestamp, fua);

    [Fact]
    public void OneCopy_IsOneRunStraightFromThatCopy()
    {
        var plan = WinningBlocks.Choose(
            [Copy(10, 4, 7, fua: true)], firstBlock: 8, newestCommitted: new long[8], mergeSafe: true);

        Assert.Equal([-1, -1, 0, 0, 0, 0, -1, -1], plan.Winners);
        Assert.Equal([new WinningRun(2, 4, 7, OnlyCopy: 0, ForceUnitAccess: true)], plan.Runs);
        Assert.Equal([true], plan.Wrote);
    }

    [Fact]
    public void TiedTimestamps_TheEarlierCopyWins()
    {
        var plan = WinningBlocks.Choose([Copy(0, 2, 5), Copy(0, 2, 5)], 0, new long[2], mergeSafe: true);

        Assert.Equal([0, 0], plan.Winners);
        Assert.Equal([true, false], plan.Wrote);
    }

    [Fact]
    public void CopyOlderThanOnDisk_IsSuperseded_AndACopyEqualToOnDisk_IsWrittenAgain()
    {
        // Block 0 has version 9 on disk (newer than the copy's 4); block 1 has the copy's own version 4, which a killed
        // target may have left half written, so writing it again is right.
        var plan = WinningBlocks.Choose([Copy(0, 2, 4)], 0, [9, 4], mergeSafe: true);

        Assert.Equal([-1, 0], plan.Winners);
        Assert.Equal([new WinningRun(1, 1, 4, 0, false)], plan.Runs);
        Assert.Equal([true], plan.Wrote);
    }

    [Fact]
    public void EveryBlockOlderThanOnDisk_WritesNothing()
    {
        var plan = WinningBlocks.Choose([Copy(0, 2, 3), Copy(1, 1, 2)], 0, [5, 5], mergeSafe: true);

        Assert.Empty(plan.Runs);
        Assert.Equal([false, false], plan.Wrote);
    }

    [Fact]
    public void MergeSafe_AdjacentVersionsMergeIntoOneRun_UnderTheNewestTimestamp()
    {
        // Copy 0 (ts 3) covers blocks 0-3, copy 1 (ts 8, FUA) overwrites blocks 2-3, copy 2 (ts 6) adds block 4.
        var plan = WinningBlocks.Choose(
            [Copy(0, 4, 3), Copy(2, 2, 8, fua: true), Copy(4, 1, 6)], 0, new long[6], mergeSafe: true);

        Assert.Equal([0, 0, 1, 1, 2, -1], plan.Winners);
        Assert.Equal([new WinningRun(0, 5, 8, OnlyCopy: -1, ForceUnitAccess: true)], plan.Runs);
        Assert.Equal([true, true, true], plan.Wrote);
    }

    [Fact]
    public void NotMergeSafe_RunsAreSplitPerVersion_SoEachBlockKeepsItsTimestamp()
    {
        var plan = WinningBlocks.Choose(
            [Copy(0, 4, 3), Copy(2, 2, 8, fua: true), Copy(4, 1, 6)], 0, new long[6], mergeSafe: false);

        Assert.Equal(
            [new WinningRun(0, 2, 3, 0, false), new WinningRun(2, 2, 8, 1, true), new WinningRun(4, 1, 6, 2, false)],
            plan.Runs);
    }

    [Fact]
    public void AGapOfNoWinner_EndsARun()
    {
        var plan = WinningBlocks.Choose([Copy(0, 1, 2), Copy(2, 1, 2)], 0, new long[3], mergeSafe: true);

        Assert.Equal([new WinningRun(0, 1, 2, 0, false), new WinningRun(2, 1, 2, 1, false)], plan.Runs);
    }

    [Fact]
    public void ACopyOutsideTheBatch_IsRefused()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(
            () => WinningBlocks.Choose([Copy(3, 2, 1)], 0, new long[4], mergeSafe: true));
        Assert.Contains("blocks 3+2", ex.Message);
    }
}
