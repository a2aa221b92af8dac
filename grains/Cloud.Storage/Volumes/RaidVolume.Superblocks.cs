using Cloud.Storage.Devices;
using Cloud.Storage.Format;

namespace Cloud.Storage.Volumes;

// Superblock updates with several openers (silos) of the same members. Every update re-reads the
// current superblocks, merges this opener's view into the newest member table, and writes the next
// generation, all under the volume's ISuperblockCoordinator; members that offer conditional writes
// (page blobs) are written only if unchanged since the read. Merge rules (docs/FORMAT.md):
//  - a different member id on disk means the position was replaced by someone else: the disk wins;
//  - for the same id, a loss is sticky: Failed beats Missing beats Active beats Resyncing and Rebuilding, so a
//    member failed by anyone stays failed until it is replaced (a new id);
//  - a rebuild cursor only moves forward.
public sealed partial class RaidVolume
{
    /// <summary>
    /// Conditional-write conflicts tolerated per update before writing unconditionally (the coordinator still excludes
    /// other writers).
    /// </summary>
    private const int MaxConditionalAttempts = 8;

    private long _lastRefreshTicks = Environment.TickCount64;

    private readonly record struct DiskView(long Generation, List<Superblock> Copies, string?[] Versions);

    /// <summary>
    /// Re-reads the superblocks and adopts what other openers recorded: members they failed stop being
    /// used here; a rebuild they finished makes the member active here. A position another opener
    /// replaced is detached (this opener no longer writes to the old disk) unless
    /// <paramref name="devices"/>[i] is the new disk, which is then verified by its superblock and used.
    /// Does not write.
    /// </summary>
    /// <param name="devices">Optional: for each position, a disk to attach if it is the one the superblocks name
    /// now.</param>
    /// <returns>The newest superblock generation seen.</returns>
    public async ValueTask<long> RefreshMembersAsync(
        IReadOnlyList<IBlockDevice?>? devices = null,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (devices is not null && devices.Count != _memberCount)
            throw new ArgumentException(
                $"{devices.Count} device slots given; the volume has {_memberCount} members.", nameof(devices));
        await _superblockGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            DiskView disk = await ReadSuperblocksAsync(cancellationToken).ConfigureAwait(false);
            MemberRecord[] merged;
            lock (_stateGate) merged = MergeLocked(disk);
            IBlockDevice?[]? attach = null;
            if (devices is not null)
                for (var i = 0; i < _memberCount; i++)
                {
                    IBlockDevice? candidate = devices[i];
                    if (candidate is null
                        || ReferenceEquals(candidate, _devices[i])
                        || !(_detached[i] || merged[i].MemberId != _memberIds[i]))
                        continue;
                    if (await OwnMemberIdAsync(candidate, i, cancellationToken).ConfigureAwait(false)
                        == merged[i].MemberId)
                        (attach ??= new IBlockDevice?[_memberCount])[i] = candidate;
                }
            lock (_stateGate) ApplyLocked(merged, Math.Max(disk.Generation, _generation), attach);
            Volatile.Write(ref _lastRefreshTicks, Environment.TickCount64);
            return Generation;
        }
        finally { _superblockGate.Release(); }
    }

    /// <summary>
    /// Refreshes when the last look at the superblocks is older than
    /// <see cref="RaidVolumeOptions.MemberRefreshInterval"/>.
    /// </summary>
    private ValueTask RefreshIfDueAsync(CancellationToken cancellationToken)
    {
        TimeSpan interval = _options.MemberRefreshInterval;
        if (interval == Timeout.InfiniteTimeSpan
            || Environment.TickCount64 - Volatile.Read(ref _lastRefreshTicks) < (long)interval.TotalMilliseconds)
            return ValueTask.CompletedTask;
        return RefreshAsync(cancellationToken);

        async ValueTask RefreshAsync(CancellationToken ct) => await RefreshMembersAsync(null, ct).ConfigureAwait(false);
    }

    private async ValueTask<Guid?> OwnMemberIdAsync(IBlockDevice device, int index, CancellationToken cancellationToken)
    {
        var buffer = new byte[OnDiskFormat.SuperblockBytes * OnDiskFormat.SuperblockCopies];
        try { await device.ReadAsync(0, buffer, cancellationToken).ConfigureAwait(false); }
        catch (BlockDeviceException) { return null; }
        Superblock? best = BestCopy(buffer, index);
        return best?.Members[index].MemberId;
    }

    private Superblock? BestCopy(byte[] buffer, int index)
    {
        Superblock? best = null;
        foreach (Superblock sb in ValidCopies(buffer, index))
            if (best is null || sb.Generation > best.Generation) best = sb;
        return best;
    }

    private List<Superblock> ValidCopies(byte[] buffer, int index)
    {
        var copies = new List<Superblock>(OnDiskFormat.SuperblockCopies);
        for (var c = 0; c < OnDiskFormat.SuperblockCopies; c++)
        {
            Superblock? sb = Superblock.TryRead(
                buffer.AsSpan(c * OnDiskFormat.SuperblockBytes, OnDiskFormat.SuperblockBytes), out _);
            // A torn or foreign copy is skipped: copies alternate by generation, so the other one is intact.
            if (sb is not null && sb.VolumeId == Definition.VolumeId && sb.MemberIndex == index) copies.Add(sb);
        }
        return copies;
    }

    /// <summary>
    /// The member table that all <paramref name="copies"/> (any generations) imply together: at each
    /// position the identity of the newest copy, with the state merged over every copy naming that
    /// identity. Merging old copies is safe because an identity's state only moves forward (rebuilding,
    /// active, missing, failed); it settles two writers that wrote the same generation.
    /// </summary>
    internal static MemberRecord[]? MergeCopies(IEnumerable<Superblock> copies, int memberCount, out long generation)
    {
        generation = -1;
        Superblock? newest = null;
        foreach (Superblock sb in copies)
            if (newest is null || sb.Generation > newest.Generation) newest = sb;
        if (newest is null) return null;
        generation = newest.Generation;
        MemberRecord[] merged = newest.Members.ToArray();
        foreach (Superblock sb in copies)
            for (var i = 0; i < memberCount; i++)
            {
                MemberRecord r = sb.Members[i];
                if (r.MemberId != merged[i].MemberId) continue;
                merged[i] = new MemberRecord(
                    r.MemberId,
                    MergeState(merged[i].State, r.State),
                    Math.Max(merged[i].RebuildCursorStripes, r.RebuildCursorStripes));
            }
        return merged;
    }

    /// <summary>
    /// Reads both superblock copies of every member this opener writes to, in parallel; the newest table wins.
    /// </summary>
    private async ValueTask<DiskView> ReadSuperblocksAsync(CancellationToken cancellationToken)
    {
        var versions = new string?[_memberCount];
        var reads = new Task<List<Superblock>>?[_memberCount];
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice? d = _devices[m];
            if (d is not null && IsWritable(m)) reads[m] = ReadOneAsync(m, d, versions, cancellationToken);
        }
        var copies = new List<Superblock>();
        for (var m = 0; m < _memberCount; m++)
        {
            if (reads[m] is not Task<List<Superblock>> read) continue;
            try { copies.AddRange(await read.ConfigureAwait(false)); }
            catch (BlockDeviceException e) { LoseLocally(m, e); }
        }
        long generation = -1;
        foreach (Superblock sb in copies) generation = Math.Max(generation, sb.Generation);
        return new DiskView(generation, copies, versions);
    }

    private async Task<List<Superblock>> ReadOneAsync(
        int m,
        IBlockDevice d,
        string?[] versions,
        CancellationToken cancellationToken)
    {
        var buffer = new byte[OnDiskFormat.SuperblockBytes * OnDiskFormat.SuperblockCopies];
        if (d is IConditionalBlockDevice c)
            versions[m] = await c.ReadVersionedAsync(0, buffer, cancellationToken).ConfigureAwait(false);
        else await d.ReadAsync(0, buffer, cancellationToken).ConfigureAwait(false);
        return ValidCopies(buffer, m);
    }

    /// <summary>This opener's view merged into the newest on-disk table (rules at the top of this file).</summary>
    private MemberRecord[] MergeLocked(DiskView disk)
    {
        var merged = new MemberRecord[_memberCount];
        MemberRecord[]? onDisk = MergeCopies(disk.Copies, _memberCount, out var diskGeneration);
        var useDisk = onDisk is not null && diskGeneration >= _generation;
        for (var i = 0; i < _memberCount; i++)
        {
            var local = new MemberRecord(_memberIds[i], _states[i], Volatile.Read(ref _cursors[i]));
            if (!useDisk) { merged[i] = local; continue; }
            MemberRecord d = onDisk![i];
            // Replaced by someone else, or a position this opener no longer holds: it has no say.
            if (d.MemberId != local.MemberId || _detached[i]) { merged[i] = d; continue; }
            merged[i] = new MemberRecord(
                d.MemberId,
                MergeState(d.State, local.State),
                Math.Max(d.RebuildCursorStripes, local.RebuildCursorStripes));
        }
        return merged;
    }

    private static MemberState MergeState(MemberState a, MemberState b)
    {
        if (a == MemberState.Failed || b == MemberState.Failed) return MemberState.Failed;
        if (a == MemberState.Missing || b == MemberState.Missing) return MemberState.Missing;
        // Same identity, one says active: the rebuild or catch-up finished (an active member never goes back to
        // rebuilding or resyncing under the same id, and an identity is given for one or the other, never both).
        if (a == MemberState.Active || b == MemberState.Active) return MemberState.Active;
        return a == MemberState.Resyncing || b == MemberState.Resyncing ? MemberState.Resyncing : MemberState.Rebuilding;
    }

    /// <summary>
    /// Makes the in-memory view match <paramref name="records"/>; <paramref name="attach"/>[i] is the disk to use for a
    /// new identity at i.
    /// </summary>
    private void ApplyLocked(MemberRecord[] records, long generation, IBlockDevice?[]? attach)
    {
        for (var i = 0; i < _memberCount; i++)
        {
            MemberRecord r = records[i];
            IBlockDevice? candidate = attach?[i];
            if (candidate is not null && (r.MemberId != _memberIds[i] || _detached[i]))
            {
                _devices[i] = candidate;
                _detached[i] = false;
                _memberIds[i] = r.MemberId;
                Volatile.Write(ref _cursors[i], r.RebuildCursorStripes);
                _reasons[i] = null;
                _states[i] = r.State;
                continue;
            }
            if (r.MemberId != _memberIds[i])
            {
                // Replaced elsewhere and this opener has not got the new disk: stop using the old one.
                _detached[i] = true;
                _devices[i] = null;
                _memberIds[i] = r.MemberId;
                Volatile.Write(ref _cursors[i], 0);
                _reasons[i] = $"replaced by another opener (superblock generation {generation}); refresh with the new disk or reassemble";
                _states[i] = MemberState.Missing;
                continue;
            }
            if (_detached[i]) continue;
            if (r.State != _states[i])
            {
                if (r.State is MemberState.Failed or MemberState.Missing)
                    _reasons[i] ??= $"{r.State} by another opener (superblock generation {generation})";
                _states[i] = r.State;
            }
            if (r.RebuildCursorStripes > Volatile.Read(ref _cursors[i]))
                Volatile.Write(ref _cursors[i], r.RebuildCursorStripes);
        }
        if (generation > _generation) Interlocked.Exchange(ref _generation, generation);
    }

    /// <summary>Marks a member lost in this view only, away or failed as <see cref="MarkLostAsync"/> decides.</summary>
    private void LoseLocally(int m, BlockDeviceException error)
    {
        lock (_stateGate)
        {
            if (_states[m] is MemberState.Failed or MemberState.Missing) return;
            var away = error is MemberUnreachableException;
            _states[m] = away ? MemberState.Missing : MemberState.Failed;
            _reasons[m] = away ? $"away: {error.Message}" : error.Message;
        }
    }

    /// <summary>Read, merge, write the next generation: see the top of this file.</summary>
    private ValueTask WriteSuperblocksAsync(CancellationToken cancellationToken)
        => UpdateSuperblocksAsync(null, null, fresh: false, cancellationToken);

    /// <summary>
    /// Writes the next generation (<see cref="WriteNextGenerationAsync"/>), then has every other opener adopt it
    /// (<see cref="ISuperblockCoordinator.PublishAsync"/>) before returning, outside this opener's update gate and the
    /// coordinator's lease, so that a re-read asked of this opener meanwhile does not wait for the publication.
    /// </summary>
    /// <param name="mutate">Applied to the merged table before writing; must be idempotent (it may run again after a
    /// conflict) and may throw to refuse.</param>
    /// <param name="attach">Disks for the new identities <paramref name="mutate"/> sets.</param>
    /// <param name="fresh">A new volume: do not read what the disks held before.</param>
    /// <param name="cancellationToken">Cancels the update.</param>
    private async ValueTask UpdateSuperblocksAsync(
        Action<MemberRecord[]>? mutate,
        IBlockDevice?[]? attach,
        bool fresh,
        CancellationToken cancellationToken)
    {
        await WriteNextGenerationAsync(mutate, attach, fresh, cancellationToken).ConfigureAwait(false);
        await _options.SuperblockCoordinator.PublishAsync(Definition.VolumeId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Read, merge, mutate and write the next generation, under the update gate and the lease.</summary>
    private async ValueTask WriteNextGenerationAsync(
        Action<MemberRecord[]>? mutate,
        IBlockDevice?[]? attach,
        bool fresh,
        CancellationToken cancellationToken)
    {
        await _superblockGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            IAsyncDisposable lease = await _options.SuperblockCoordinator.AcquireAsync(
                Definition.VolumeId, cancellationToken).ConfigureAwait(false);
            try
            {
                // Each round either succeeds, loses a member (at most MemberCount times) or meets a conflict (at most
                // MaxConditionalAttempts times).
                for (var attempt = 0; attempt <= MaxConditionalAttempts + _memberCount; attempt++)
                {
                    var conditional = attempt < MaxConditionalAttempts;
                    DiskView disk = fresh
                        ? new DiskView(-1, [], new string?[_memberCount])
                        : await ReadSuperblocksAsync(cancellationToken).ConfigureAwait(false);
                    MemberRecord[] records;
                    long generation;
                    lock (_stateGate)
                    {
                        records = MergeLocked(disk);
                        generation = Math.Max(_generation, disk.Generation) + 1;
                    }
                    mutate?.Invoke(records);
                    // The view changes before the write so that the data path stops using a failed member at once.
                    lock (_stateGate) ApplyLocked(records, generation, attach);
                    var writes = new List<(int Member, Task<bool> Task)>();
                    for (var m = 0; m < _memberCount; m++)
                    {
                        IBlockDevice? d = _devices[m];
                        if (d is null || !IsWritable(m)) continue;
                        var sb = new Superblock
                        {
                            VolumeId = Definition.VolumeId, VolumeName = Definition.Name, MemberIndex = m,
                            Geometry = Geometry,
                            StripeCount = StripeCount, Generation = generation, Created = _created,
                            Updated = DateTimeOffset.UtcNow, Members = records,
                            PartialParitySlotBytes = _pplSlotBytes,
                        };
                        var block = new byte[OnDiskFormat.SuperblockBytes];
                        sb.WriteTo(block);
                        var offset = generation % OnDiskFormat.SuperblockCopies * OnDiskFormat.SuperblockBytes;
                        writes.Add((m, WriteSuperblockCopyAsync(
                            d, offset, block, conditional ? disk.Versions[m] : null, cancellationToken)));
                    }
                    var again = false;
                    foreach ((var m, Task<bool> t) in writes)
                    {
                        try { again |= !await t.ConfigureAwait(false); }
                        catch (BlockDeviceException e)
                        {
                            // A member that failed mid-update must be recorded as failed on the others.
                            LoseLocally(m, e);
                            again = true;
                        }
                    }
                    if (!again) return;
                }
            }
            finally { await lease.DisposeAsync().ConfigureAwait(false); }
        }
        finally { _superblockGate.Release(); }
    }

    /// <summary>
    /// Writes one superblock copy and flushes; false when a conditional write met a newer version (nothing written).
    /// </summary>
    private static async Task<bool> WriteSuperblockCopyAsync(
        IBlockDevice device,
        long offset,
        byte[] block,
        string? version,
        CancellationToken cancellationToken)
    {
        if (version is not null && device is IConditionalBlockDevice c)
        {
            if (!await c.WriteIfVersionAsync(offset, block, version, cancellationToken).ConfigureAwait(false))
                return false;
        }
        else await device.WriteAsync(offset, block, cancellationToken).ConfigureAwait(false);
        await device.FlushAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }
}
