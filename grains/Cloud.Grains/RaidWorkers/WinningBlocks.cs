namespace Cloud.Grains.RaidWorkers;

/// <summary>One replicated copy of a batch, as the choice of winning blocks sees it.</summary>
/// <param name="FirstBlock">The copy's first block (volume-wide index).</param>
/// <param name="BlockCount">Blocks the copy covers.</param>
/// <param name="Timestamp">The copy's write timestamp.</param>
/// <param name="ForceUnitAccess">The copy must reach stable media before it is reported committed.</param>
internal readonly record struct BatchCopy(long FirstBlock, int BlockCount, long Timestamp, bool ForceUnitAccess);

/// <summary>Consecutive winning blocks written to the engine in one call.</summary>
/// <param name="Start">The run's first block, relative to the batch's first block.</param>
/// <param name="BlockCount">Blocks in the run.</param>
/// <param name="Timestamp">The label the run is written and committed under: the newest timestamp among its
/// blocks.</param>
/// <param name="OnlyCopy">The copy every block of the run comes from, or -1 when the run is merged from
/// several.</param>
/// <param name="ForceUnitAccess">Some copy in the run asked for force unit access.</param>
internal readonly record struct WinningRun(
    int Start,
    int BlockCount,
    long Timestamp,
    int OnlyCopy,
    bool ForceUnitAccess);

/// <summary>What a batch writes: the winning copy of each block and the runs that write them.</summary>
/// <param name="Winners">Per block of the batch, the index of the copy whose version is written, or -1 for
/// none.</param>
/// <param name="Runs">The runs to write, in block order.</param>
/// <param name="Wrote">Per copy, whether any of its blocks is written (else the copy is superseded).</param>
internal sealed record WinningPlan(int[] Winners, WinningRun[] Runs, bool[] Wrote);

/// <summary>
/// The choice of winning blocks of a batch of replicated copies (patent claim 48: a version older than the newest
/// committed one is dropped). A pure function, so that its rules are tested on their own.
/// </summary>
internal static class WinningBlocks
{
    /// <summary>
    /// Chooses, per block, the newest copy whose timestamp is not older than the block's newest committed version,
    /// and groups the winning blocks into runs.
    /// </summary>
    /// <param name="copies">The batch's copies; on a tie of timestamps the earlier copy wins.</param>
    /// <param name="firstBlock">The batch's first block (volume-wide index).</param>
    /// <param name="newestCommitted">Per block of the batch, the newest timestamp known committed (on disk or at the
    /// lock grain).</param>
    /// <param name="mergeSafe">
    /// No older version elsewhere is pending on these stripes, so adjacent blocks of different versions may be written
    /// as one run under the newest timestamp. When false, runs are split per version so each block keeps its own.
    /// </param>
    public static WinningPlan Choose(
        ReadOnlySpan<BatchCopy> copies,
        long firstBlock,
        ReadOnlySpan<long> newestCommitted,
        bool mergeSafe)
    {
        var winners = ChooseWinners(copies, firstBlock, newestCommitted);
        var runs = new List<WinningRun>();
        var wrote = new bool[copies.Length];
        for (var i = 0; i < winners.Length;)
        {
            if (winners[i] < 0) { i++; continue; }
            var run = RunAt(copies, winners, i, mergeSafe);
            for (var k = run.Start; k < run.Start + run.BlockCount; k++) wrote[winners[k]] = true;
            runs.Add(run);
            i += run.BlockCount;
        }
        return new WinningPlan(winners, [.. runs], wrote);
    }

    private static int[] ChooseWinners(
        ReadOnlySpan<BatchCopy> copies,
        long firstBlock,
        ReadOnlySpan<long> newestCommitted)
    {
        var winners = new int[newestCommitted.Length];
        Array.Fill(winners, -1);
        for (var c = 0; c < copies.Length; c++)
        {
            var copy = copies[c];
            var start = checked((int)(copy.FirstBlock - firstBlock));
            if (start < 0 || start + copy.BlockCount > winners.Length)
                throw new ArgumentOutOfRangeException(
                    nameof(copies),
                    $"copy {c} (blocks {copy.FirstBlock}+{copy.BlockCount}) lies outside the batch's blocks {firstBlock}+{winners.Length}");
            for (var i = start; i < start + copy.BlockCount; i++)
            {
                // ">=": a block already stamped with this very version may be one a killed target left half written
                // (its metadata landed, its data did not); writing the same version again is idempotent.
                if (copy.Timestamp >= newestCommitted[i]
                    && (winners[i] < 0 || copies[winners[i]].Timestamp < copy.Timestamp))
                    winners[i] = c;
            }
        }
        return winners;
    }

    private static WinningRun RunAt(ReadOnlySpan<BatchCopy> copies, int[] winners, int start, bool mergeSafe)
    {
        var first = copies[winners[start]];
        var end = start + 1;
        while (end < winners.Length
            && winners[end] >= 0
            && (mergeSafe || copies[winners[end]].Timestamp == first.Timestamp))
            end++;
        var only = winners[start];
        var label = first.Timestamp;
        var fua = first.ForceUnitAccess;
        for (var k = start + 1; k < end; k++)
        {
            var copy = copies[winners[k]];
            if (winners[k] != only) only = -1;
            label = Math.Max(label, copy.Timestamp);
            fua |= copy.ForceUnitAccess;
        }
        return new WinningRun(start, end - start, label, only, fua);
    }
}
