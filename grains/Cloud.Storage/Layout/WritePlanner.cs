namespace Cloud.Storage.Layout;

/// <summary>How a partial-stripe update obtains the parity it writes.</summary>
public enum WriteStrategy
{
    /// <summary>Every data block of the touched rows is new: compute parity, read nothing.</summary>
    FullStripe,

    /// <summary>Read the old data being replaced and the old parity, apply the delta (md "rmw").</summary>
    ReadModifyWrite,

    /// <summary>Read the untouched data of the touched rows and compute parity afresh (md "rcw").</summary>
    ReconstructWrite,

    /// <summary>
    /// Read every usable member's touched rows, verify each block, and rebuild in memory the ones that are missing
    /// or corrupt before computing parity: the way for a degraded stripe, or when a planned read failed or found a
    /// corrupt block. <see cref="WritePlanner"/> never chooses it; the volume falls back to it.
    /// </summary>
    LoadAndReconstruct,
}

/// <summary>
/// Chooses between read-modify-write and reconstruct-write for one stripe by counting the blocks
/// each must read, as Linux md's <c>handle_stripe_dirtying</c> does; ties go to reconstruct-write,
/// which leaves no dependency on the old parity being right.
/// </summary>
public static class WritePlanner
{
    /// <summary>
    /// Plans a write that dirties, in each data chunk d, the block rows
    /// [<paramref name="firstDirtyBlock"/>[d], <paramref name="endDirtyBlock"/>[d]) (empty when equal).
    /// The parity rows written are the union of the dirty rows.
    /// </summary>
    /// <returns>The strategy and the number of blocks it reads.</returns>
    public static (WriteStrategy Strategy, int ReadBlocks) Plan(
        ReadOnlySpan<int> firstDirtyBlock,
        ReadOnlySpan<int> endDirtyBlock,
        int parityCount)
    {
        if (firstDirtyBlock.Length != endDirtyBlock.Length)
            throw new ArgumentException(
                $"{firstDirtyBlock.Length} starts but {endDirtyBlock.Length} ends.", nameof(endDirtyBlock));
        int rowStart = int.MaxValue, rowEnd = 0;
        for (var d = 0; d < firstDirtyBlock.Length; d++)
        {
            if (endDirtyBlock[d] <= firstDirtyBlock[d]) continue;
            rowStart = Math.Min(rowStart, firstDirtyBlock[d]);
            rowEnd = Math.Max(rowEnd, endDirtyBlock[d]);
        }
        if (rowEnd == 0) throw new ArgumentException("no data chunk is dirty.", nameof(endDirtyBlock));
        var rows = rowEnd - rowStart;
        int rmw = parityCount * rows, rcw = 0;
        for (var d = 0; d < firstDirtyBlock.Length; d++)
        {
            var dirty = Math.Max(0, endDirtyBlock[d] - firstDirtyBlock[d]);
            rmw += dirty;
            rcw += rows - dirty;
        }
        if (rcw == 0) return (WriteStrategy.FullStripe, 0);
        return rmw < rcw ? (WriteStrategy.ReadModifyWrite, rmw) : (WriteStrategy.ReconstructWrite, rcw);
    }
}
