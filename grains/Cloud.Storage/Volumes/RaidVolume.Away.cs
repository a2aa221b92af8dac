using Cloud.Storage.Devices;
using Cloud.Storage.Format;

namespace Cloud.Storage.Volumes;

// The away record (docs/FORMAT.md, "Away area"): while a member is away, every writer marks the regions it writes in
// its own page of the away area on the members present, durably and before the write is acknowledged. A member that
// returns rejoins as Resyncing and catches up only the marked regions, as md re-adds a disk through its write-intent
// bitmap; each writer clears its page once no member is away or catching up.
public sealed partial class RaidVolume
{
    /// <summary>Regions this opener has marked in its page of the away record.</summary>
    public int AwayRegions => _away.DirtyRegions;

    /// <summary>Stripes one bit of the away record covers.</summary>
    public long AwayRegionStripes => _away.RegionStripes;

    /// <summary>
    /// The stripe ranges (end exclusive) that the away record marks, merged over every writer's page on every member
    /// present: what a returning member would resync. Changes nothing.
    /// </summary>
    public async ValueTask<IReadOnlyList<(long First, long End)>> AwayStripesAsync(
        CancellationToken cancellationToken = default)
    {
        var record = await ReadAwayRecordAsync(cancellationToken).ConfigureAwait(false);
        return [.. WriteIntentLog.MarkedStripes(record, StripeCount, _away.RegionStripes)];
    }

    private ValueTask PersistAwayPageAsync(ReadOnlyMemory<byte> page, CancellationToken cancellationToken) =>
        PersistSlotPageAsync(OnDiskFormat.AwayOffsetBytes, page, cancellationToken);

    /// <summary>
    /// True when a write of <paramref name="stripe"/> leaves out a member that will want it back: one away, or one
    /// catching up that has not passed the stripe. A failed member is not one (it is replaced and rebuilt whole), nor
    /// is a replacement being rebuilt (its rebuild covers every stripe above its cursor).
    /// </summary>
    private bool AnyAway(long stripe)
    {
        for (var m = 0; m < _memberCount; m++)
        {
            MemberState s = _states[m];
            if (s == MemberState.Missing) return true;
            if (s == MemberState.Resyncing && stripe >= Volatile.Read(ref _cursors[m])) return true;
        }
        return false;
    }

    /// <summary>True when no member is away or catching up, so the away record has nothing left to say.</summary>
    private bool NoneAway()
    {
        for (var m = 0; m < _memberCount; m++)
            if (_states[m] is MemberState.Missing or MemberState.Resyncing) return false;
        return true;
    }

    /// <summary>
    /// Marks <paramref name="stripe"/> in the away record when a member is left out of its write, and otherwise notes in
    /// the intent log that the write reaches every member (<see cref="KeepForAwayAsync"/>). Called with the stripe
    /// locked, before the write and again after it (a member may have gone away during it), and in both cases before
    /// the write is acknowledged.
    /// </summary>
    private ValueTask MarkIfAwayAsync(long stripe, CancellationToken cancellationToken)
    {
        if (AnyAway(stripe)) return _away.MarkAsync(stripe, cancellationToken);
        _intent.NoteReachedEvery(stripe);
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Before this opener's intent marks are cleared after a flush while a member is away or catching up: records in
    /// the away record the stripes of those marks whose writes reached every member (<see cref="WriteIntentLog.NoteReachedEvery"/>),
    /// the member now away included. Those writes were made before it was left out, so the away record does not have
    /// them, and the flush that lets their marks go did not reach it: it may have lost them with its host's power (a
    /// completed write sits in the host's page cache until flushed), and its catch-up would skip them. md keeps its
    /// bitmap's bits while an array is degraded for the same reason. The writes made while a member was away are in
    /// the away record already, at its finer grain, and are not handed over again.
    /// </summary>
    private async ValueTask KeepForAwayAsync(
        IReadOnlyList<(long First, long End)> stripes,
        CancellationToken cancellationToken)
    {
        if (NoneAway()) return;
        foreach (var (first, end) in stripes) await MarkAwayAsync(first, end, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Marks stripes [<paramref name="first"/>, <paramref name="end"/>) in this opener's away page.</summary>
    private async ValueTask MarkAwayAsync(long first, long end, CancellationToken cancellationToken)
    {
        var step = _away.RegionStripes;
        for (var s = first; s < end; s = ((s / step) + 1) * step)
            await _away.MarkAsync(s, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Clears this opener's away page once every member is present and caught up (checked again under the
    /// page's own gate, so that a mark made meanwhile stays).</summary>
    private ValueTask ClearAwayIfAllPresentAsync(CancellationToken cancellationToken) =>
        _away.DirtyRegions > 0 && NoneAway()
            ? _away.ClearIdleAsync(cancellationToken, NoneAway)
            : ValueTask.CompletedTask;

    /// <summary>
    /// Adopts this opener's page of the away record as it is on the members (a writer slot is reused by the silo of
    /// the same name), so that its first mark does not erase marks made before it opened.
    /// </summary>
    private async ValueTask LoadAwayPageAsync(CancellationToken cancellationToken)
    {
        var merged = await ReadBitmapAreaAsync(
            OnDiskFormat.AwayOffsetBytes + (long)_options.WriterSlot * OnDiskFormat.IntentSlotBytes,
            1,
            cancellationToken).ConfigureAwait(false);
        _away.Load(merged);
    }

    /// <summary>Every writer's away page, merged (OR) over the writable members into one page.</summary>
    private ValueTask<byte[]> ReadAwayRecordAsync(CancellationToken cancellationToken) =>
        ReadBitmapAreaAsync(OnDiskFormat.AwayOffsetBytes, OnDiskFormat.IntentSlotCount, cancellationToken);

    /// <summary>
    /// Reads <paramref name="pages"/> bitmap pages from <paramref name="offsetBytes"/> on every writable member and
    /// ORs them all into one page. A member that fails the read is marked lost and left out.
    /// </summary>
    private async ValueTask<byte[]> ReadBitmapAreaAsync(long offsetBytes, int pages, CancellationToken cancellationToken)
    {
        var merged = new byte[OnDiskFormat.IntentSlotBytes];
        var area = new byte[pages * OnDiskFormat.IntentSlotBytes];
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice? d = _devices[m];
            if (d is null || !IsWritable(m)) continue;
            try { await d.ReadAsync(offsetBytes, area, cancellationToken).ConfigureAwait(false); }
            catch (BlockDeviceException e)
            {
                await MarkLostAsync(m, e, cancellationToken).ConfigureAwait(false);
                continue;
            }
            for (var i = 0; i < area.Length; i++) merged[i % merged.Length] |= area[i];
        }
        return merged;
    }

    /// <summary>
    /// Moves a catching-up member's cursor past <paramref name="stripe"/> without writing, when neither the away
    /// record read for this step nor this opener's own marks name it; false when the stripe must be resynced. Under
    /// the stripe lock, so that a write of the stripe by this opener is either done (and marked) or sees the new
    /// cursor and includes the member.
    /// </summary>
    private async ValueTask<bool> TrySkipCaughtUpStripeAsync(
        int m,
        long stripe,
        byte[] record,
        CancellationToken cancellationToken)
    {
        using LockedStripe locked = await LockStripeAsync(stripe, cancellationToken).ConfigureAwait(false);
        var region = stripe / _away.RegionStripes;
        if ((record[region >> 3] & (1 << (int)(region & 7))) != 0 || _away.IsMarked(stripe)) return false;
        Volatile.Write(ref _cursors[m], stripe + 1);
        return true;
    }
}
