using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;

namespace Cloud.Storage.Volumes;

/// <summary>
/// A RAID-0/1/5/6 volume over member <see cref="IBlockDevice"/>s, with per-block checksums and write
/// timestamps, degraded operation, rebuild, scrub and a write-intent bitmap against the write hole.
/// </summary>
/// <remarks>
/// <para>Safe for concurrent callers: writers (and reads that need repair or reconstruction) of one
/// stripe are serialised by a per-stripe async lock; different stripes proceed in parallel, and each
/// stripe's member I/Os are issued together.</para>
/// <para>Capacity: every member contributes the same number of stripes, set by the smallest member:
/// <c>floor((smallest capacity - 1 MiB) / (chunk + metadata sector))</c>; space beyond that on larger
/// members is unused.</para>
/// <para>The volume does not own its member devices: dispose them after the volume.</para>
/// <para>Several processes may open the same members: superblock updates re-read, merge and write the
/// next generation under <see cref="RaidVolumeOptions.SuperblockCoordinator"/> (docs/FORMAT.md,
/// "Updates with several openers"), and <see cref="RefreshMembersAsync"/> adopts other openers' changes.
/// Rebuild one member from one process at a time.</para>
/// </remarks>
public sealed partial class RaidVolume : IBlockVolume, IAsyncDisposable
{
    private const int StripeLockCount = 4096;
    private const long ScratchBudgetBytes = 256L << 20;

    private readonly IBlockDevice?[] _devices;
    private readonly MemberState[] _states;

    /// <summary>
    /// Per member: writes completed through the data path (a count), and the count a completed flush covered. A member
    /// whose count is covered has nothing to flush: a forced-unit-access write flushes only the members it wrote.
    /// </summary>
    private readonly long[] _writesDone, _writesFlushed;
    private readonly Guid[] _memberIds;
    private readonly long[] _cursors;
    private readonly string?[] _reasons;
    private readonly bool[] _detached;
    private readonly object _stateGate = new();
    private readonly SemaphoreSlim _superblockGate = new(1, 1);
    private readonly SemaphoreSlim[] _stripeLocks;
    private readonly WriteIntentLog _intent;
    private readonly WriteIntentLog _away;
    private readonly StripeScratchPool _scratchPool;
    private readonly RaidVolumeOptions _options;
    private readonly DateTimeOffset _created;
    private readonly int _chunk, _metaBytes, _slotBytes, _blocksPerChunk, _memberCount, _dataCount, _parityCount;
    private long _generation;
    private int _disposed;
    private RebuildProgress? _rebuild;

    private RaidVolume(VolumeDefinition definition, long stripeCount, IBlockDevice?[] devices,
        IReadOnlyList<MemberRecord> records,
        long generation, DateTimeOffset created, RaidVolumeOptions options, long partialParitySlotBytes)
    {
        Definition = definition;
        Layout = new StripeLayout(
            definition.Geometry,
            stripeCount,
            OnDiskFormat.DataOffsetBytes,
            OnDiskFormat.ChunkStrideBytes(definition.Geometry.ChunkSizeBytes));
        _options = options;
        _devices = devices;
        _memberCount = definition.Geometry.MemberCount;
        _dataCount = definition.Geometry.DataMemberCount;
        _parityCount = definition.Geometry.ParityMemberCount;
        _chunk = definition.Geometry.ChunkSizeBytes;
        _metaBytes = OnDiskFormat.MetadataBytes(_chunk);
        _slotBytes = _chunk + _metaBytes;
        _blocksPerChunk = definition.Geometry.BlocksPerChunk;
        _states = new MemberState[_memberCount];
        // Every member starts with a write not known to be flushed, so the first flush reaches each one.
        _writesDone = new long[_memberCount];
        _writesFlushed = new long[_memberCount];
        Array.Fill(_writesDone, 1L);
        _memberIds = new Guid[_memberCount];
        _cursors = new long[_memberCount];
        _reasons = new string?[_memberCount];
        _detached = new bool[_memberCount];
        for (var i = 0; i < _memberCount; i++)
        {
            _memberIds[i] = records[i].MemberId;
            _states[i] = records[i].State;
            _cursors[i] = records[i].RebuildCursorStripes;
        }
        _generation = generation;
        _created = created;
        _stripeLocks = new SemaphoreSlim[StripeLockCount];
        for (var i = 0; i < _stripeLocks.Length; i++) _stripeLocks[i] = new SemaphoreSlim(1, 1);
        _intent = new WriteIntentLog(
            stripeCount,
            OnDiskFormat.IntentRegionStripes(stripeCount, definition.Geometry.StripeDataBytes),
            options.WriteIntentLog,
            PersistIntentPageAsync);
        // Kept even when the intent log is off: without it a returning member could only be rebuilt whole.
        _away = new WriteIntentLog(
            stripeCount,
            OnDiskFormat.AwayRegionStripes(stripeCount, definition.Geometry.StripeDataBytes),
            enabled: true,
            PersistAwayPageAsync);
        var slots = _dataCount + _parityCount;
        var retained = (int)Math.Clamp(ScratchBudgetBytes / ((long)_memberCount * _slotBytes), 2, 256);
        _scratchPool = new StripeScratchPool(
            () => new StripeScratch(_memberCount, _slotBytes, _blocksPerChunk, _dataCount, slots), retained);
        MaxIoSizeBytes = Math.Max(options.MaxIoSizeBytes, definition.Geometry.StripeDataBytes);
        _pplSlotBytes = partialParitySlotBytes;
        _pplAreaOffset = OnDiskFormat.DataOffsetBytes + stripeCount * Layout.ChunkStrideBytes;
        _pplRings = new PartialParityRing[_memberCount];
        for (var m = 0; m < _memberCount; m++) _pplRings[m] = new PartialParityRing(partialParitySlotBytes);
    }

    /// <summary>Name, identity and geometry.</summary>
    public VolumeDefinition Definition { get; }

    /// <summary>The geometry.</summary>
    public VolumeGeometry Geometry => Definition.Geometry;

    /// <summary>The stripe mapping (offsets include the on-disk data offset and metadata stride).</summary>
    public StripeLayout Layout { get; }

    /// <summary>Stripes in the volume.</summary>
    public long StripeCount => Layout.StripeCount;

    /// <inheritdoc />
    public string Name => Definition.Name;

    /// <inheritdoc />
    public long CapacityBytes => Layout.CapacityBytes;

    /// <summary>
    /// The least size of a member device: superblocks, bitmaps, every chunk slot and the partial-parity area if the volume
    /// keeps one (what a replacement needs).
    /// </summary>
    public long MemberBytesNeeded => _pplAreaOffset + OnDiskFormat.PartialParityAreaBytes(_pplSlotBytes);

    /// <inheritdoc />
    public int BlockSizeBytes => VolumeGeometry.BlockSizeBytes;

    /// <inheritdoc />
    public int PreferredIoSizeBytes => Geometry.StripeDataBytes;

    /// <inheritdoc />
    public int MaxIoSizeBytes { get; }

    /// <summary>The superblock generation last written.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>Write-intent regions currently marked dirty by this opener.</summary>
    public int DirtyIntentRegions => _intent.DirtyRegions;

    /// <summary>The running rebuild's progress, or null.</summary>
    public RebuildProgress? CurrentRebuild { get { lock (_stateGate) return _rebuild; } }

    /// <summary>Redundancy as a whole.</summary>
    /// <remarks>
    /// Read without a lock (it is checked on every I/O, and a volume-wide lock there would serialise
    /// stripes); each member's state is a single byte, so a racing reader sees the old or new state.
    /// A rebuilding member does not yet count as redundancy: losing more members than the level
    /// tolerates, rebuilding ones included, fails the volume.
    /// </remarks>
    public VolumeHealth Health
    {
        get
        {
            int lost = 0, rebuilding = 0;
            for (var i = 0; i < _states.Length; i++)
            {
                MemberState s = _states[i];
                if (s is MemberState.Failed or MemberState.Missing) lost++;
                else if (s is MemberState.Rebuilding or MemberState.Resyncing) rebuilding++;
            }
            if (lost + rebuilding > Geometry.MaxFailedMembers) return VolumeHealth.Failed;
            if (rebuilding > 0) return VolumeHealth.Rebuilding;
            return lost > 0 ? VolumeHealth.Degraded : VolumeHealth.Healthy;
        }
    }

    /// <summary>Every member's state.</summary>
    public IReadOnlyList<MemberInfo> Members
    {
        get
        {
            lock (_stateGate)
            {
                var list = new MemberInfo[_memberCount];
                for (var i = 0; i < _memberCount; i++)
                    list[i] = new MemberInfo(
                        i, _devices[i]?.Name, _memberIds[i], _states[i], Volatile.Read(ref _cursors[i]), _reasons[i]);
                return list;
            }
        }
    }

    /// <summary>
    /// Formats <paramref name="members"/> as a new volume: writes each member's superblock and clears
    /// the write-intent area. The smallest member sets the capacity.
    /// </summary>
    public static async ValueTask<RaidVolume> CreateAsync(VolumeDefinition definition,
        IReadOnlyList<IBlockDevice> members,
        RaidVolumeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(definition);
        ArgumentNullException.ThrowIfNull(members);
        definition.Validate();
        options = (options ?? new RaidVolumeOptions()).Validate();
        VolumeGeometry g = definition.Geometry;
        if (members.Count != g.MemberCount)
            throw new ArgumentException(
                $"{members.Count} devices given; the geometry {g} needs exactly {g.MemberCount}.", nameof(members));
        var smallest = long.MaxValue;
        var smallestName = "";
        for (var i = 0; i < members.Count; i++)
        {
            IBlockDevice d = members[i]
                ?? throw new ArgumentException(
                    $"member {i} is null; every member is needed to create a volume.", nameof(members));
            if (VolumeGeometry.BlockSizeBytes % d.SectorSizeBytes != 0)
                throw new ArgumentException(
                    $"{d.Name}: sector size {d.SectorSizeBytes} does not divide the {VolumeGeometry.BlockSizeBytes}-byte block.",
                    nameof(members));
            for (var j = 0; j < i; j++)
                if (ReferenceEquals(members[j], d) || members[j].Name == d.Name)
                    throw new ArgumentException(
                        $"device {d.Name} is given as both member {j} and member {i}.", nameof(members));
            if (d.CapacityBytes < smallest) { smallest = d.CapacityBytes; smallestName = d.Name; }
        }
        var pplSlotBytes = options.PartialParityLog && g.ParityMemberCount > 0
            ? OnDiskFormat.PartialParitySlotBytes(g.ChunkSizeBytes)
            : 0;
        var pplArea = OnDiskFormat.PartialParityAreaBytes(pplSlotBytes);
        var stripes = OnDiskFormat.StripesThatFit(smallest - pplArea, g.ChunkSizeBytes);
        if (stripes < 1)
            throw new ArgumentException(
                $"{smallestName} holds {smallest} bytes; a member needs at least {OnDiskFormat.DataOffsetBytes + OnDiskFormat.ChunkStrideBytes(g.ChunkSizeBytes) + pplArea} bytes for chunk size {g.ChunkSizeBytes}{(pplArea > 0 ? " and the partial parity log" : "")}.",
                nameof(members));

        var records = new MemberRecord[g.MemberCount];
        for (var i = 0; i < records.Length; i++) records[i] = new MemberRecord(Guid.NewGuid(), MemberState.Active, 0);
        var volume = new RaidVolume(
            definition, stripes, members.ToArray(), records, 0, DateTimeOffset.UtcNow, options, pplSlotBytes);
        await volume.InitializeMembersAsync(options.ZeroMembersOnCreate, cancellationToken).ConfigureAwait(false);
        return volume;
    }

    private async ValueTask InitializeMembersAsync(bool zeroData, CancellationToken cancellationToken)
    {
        var zeros = new byte[Math.Max(OnDiskFormat.BitmapAreasBytes, zeroData ? 1 << 20 : 0)];
        var tasks = new List<Task>();
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice d = _devices[m]!;
            tasks.Add(
                d.WriteAsync(
                    OnDiskFormat.IntentOffsetBytes,
                    zeros.AsMemory(0, OnDiskFormat.BitmapAreasBytes),
                    cancellationToken).AsTask());
            if (zeroData)
                tasks.Add(
                    ZeroRangeAsync(
                        d,
                        OnDiskFormat.DataOffsetBytes,
                        StripeCount * Layout.ChunkStrideBytes,
                        zeros,
                        cancellationToken));
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
        // Write both copies so that no copy left from an earlier use of the disk can outrank these.
        await UpdateSuperblocksAsync(null, null, fresh: true, cancellationToken).ConfigureAwait(false);
        await UpdateSuperblocksAsync(null, null, fresh: true, cancellationToken).ConfigureAwait(false);
        foreach (IBlockDevice? d in _devices) await d!.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task ZeroRangeAsync(
        IBlockDevice device,
        long offsetBytes,
        long lengthBytes,
        byte[] zeros,
        CancellationToken cancellationToken)
    {
        for (long done = 0; done < lengthBytes;)
        {
            var n = (int)Math.Min(zeros.Length, lengthBytes - done);
            await device.WriteAsync(offsetBytes + done, zeros.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
            done += n;
        }
    }

    /// <summary>
    /// Assembles a volume from its members' superblocks. <paramref name="members"/>[i] must be the disk
    /// that holds member i, or null when it is absent (the volume then runs degraded). A disk of another
    /// volume, one the volume has dropped or replaced, one in the wrong position, or too few members,
    /// are refused with <see cref="VolumeFormatException"/>. Stripes that writers marked in the intent
    /// bitmap are then resynced (see <see cref="RaidVolumeOptions.RecoverAllWriterSlots"/>), unless
    /// <see cref="RaidVolumeOptions.RecoverOnAssemble"/> is off.
    /// </summary>
    public static async ValueTask<RaidVolume> AssembleAsync(IReadOnlyList<IBlockDevice?> members,
        RaidVolumeOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(members);
        options = (options ?? new RaidVolumeOptions()).Validate();
        if (members.Count is 0 or > VolumeGeometry.MaxMemberCount)
            throw new ArgumentOutOfRangeException(
                nameof(members), members.Count, $"allowed: 1..{VolumeGeometry.MaxMemberCount} member slots.");

        (Superblock?[] found, IBlockDevice?[] devices, List<Superblock> allCopies) = await ReadMemberSuperblocksAsync(
            members, cancellationToken).ConfigureAwait(false);
        // The volume most of the given disks belong to is the one being assembled (a single foreign
        // disk must not make ours look foreign); within it the highest generation is authoritative.
        Guid majority = found.Where(sb => sb is not null).GroupBy(sb => sb!.VolumeId)
            .OrderByDescending(g => g.Count()).Select(g => g.Key).FirstOrDefault();
        Superblock? authority = null;
        foreach (Superblock? sb in found)
            if (sb is not null
                && sb.VolumeId == majority
                && (authority is null || sb.Generation > authority.Generation))
                authority = sb;
        if (authority is null)
            throw new VolumeFormatException($"none of the {members.Count} devices given is readable; cannot assemble.");

        VolumeGeometry g = authority.Geometry;
        // Every copy of this volume counts, not only the newest: two openers that raced may have written
        // the same generation with different failures, and neither failure may be lost.
        MemberRecord[] table = MergeCopies(
            allCopies.Where(sb => sb.VolumeId == authority.VolumeId && sb.Geometry == authority.Geometry),
            authority.Geometry.MemberCount, out _) ?? authority.Members.ToArray();
        if (members.Count != g.MemberCount)
            throw new VolumeFormatException(
                $"volume '{authority.VolumeName}' ({authority.VolumeId}) has {g.MemberCount} members; {members.Count} device slots were given.");
        CheckAssembledMembers(found, devices, authority, table);

        var records = new MemberRecord[g.MemberCount];
        var rejoining = new IBlockDevice?[g.MemberCount];
        var changed = false;
        for (var i = 0; i < records.Length; i++)
        {
            MemberRecord r = table[i];
            if (devices[i] is null && r.State is MemberState.Active or MemberState.Rebuilding or MemberState.Resyncing)
            {
                r = r with { State = MemberState.Missing };
                changed = true;
            }
            else if (devices[i] is null && r.State == MemberState.Missing) { }
            else if (found[i] is not null && found[i]!.Generation != authority.Generation) changed = true;
            if (devices[i] is not null && r.State == MemberState.Missing)
            {
                // A member that was away and came back unchanged: its data is as old as its absence, so the stripes
                // written meanwhile (the away record) must be resynced. It rejoins under a new identity, as a
                // replacement would, so that other openers' "missing" records (sticky for the old identity) do not
                // outvote the rejoin; it is current except on those stripes, so it catches up rather than rebuilds.
                rejoining[i] = devices[i];
                changed = true;
            }
            records[i] = r;
        }
        var definition = new VolumeDefinition(authority.VolumeName, authority.VolumeId, g);
        var volume = new RaidVolume(
            definition, authority.StripeCount, devices, records, authority.Generation, authority.Created, options,
            authority.PartialParitySlotBytes);
        if (volume.Health == VolumeHealth.Failed)
            throw new VolumeFormatException(
                $"volume '{definition.Name}' has {records.Count(r => r.State is MemberState.Failed or MemberState.Missing)} of {g.MemberCount} members failed or missing; {g.Level} tolerates {g.MaxFailedMembers}.");
        if (changed)
        {
            var newIds = new Guid?[g.MemberCount];
            for (var i = 0; i < newIds.Length; i++) if (rejoining[i] is not null) newIds[i] = Guid.NewGuid();
            await volume.UpdateSuperblocksAsync(table =>
            {
                for (var i = 0; i < table.Length; i++)
                    if (newIds[i] is Guid id
                        && table[i].MemberId == records[i].MemberId
                        && table[i].State == MemberState.Missing)
                        table[i] = new MemberRecord(id, MemberState.Resyncing, 0);
            }, rejoining, fresh: false, cancellationToken).ConfigureAwait(false);
        }
        await volume.LoadAwayPageAsync(cancellationToken).ConfigureAwait(false);
        if (options.RecoverOnAssemble) await volume.RecoverAsync(cancellationToken).ConfigureAwait(false);
        return volume;
    }

    /// <summary>
    /// Reads the superblock copies of every given disk: per position the newest valid copy (null for an absent or
    /// unreadable disk, which counts as missing), and every valid copy that names its own position.
    /// </summary>
    private static async ValueTask<(Superblock?[] Found, IBlockDevice?[] Devices, List<Superblock> AllCopies)>
        ReadMemberSuperblocksAsync(IReadOnlyList<IBlockDevice?> members, CancellationToken cancellationToken)
    {
        var found = new Superblock?[members.Count];
        var devices = new IBlockDevice?[members.Count];
        var allCopies = new List<Superblock>();
        var buffer = new byte[OnDiskFormat.SuperblockBytes * OnDiskFormat.SuperblockCopies];
        for (var i = 0; i < members.Count; i++)
        {
            IBlockDevice? d = members[i];
            if (d is null) continue;
            try { await d.ReadAsync(0, buffer, cancellationToken).ConfigureAwait(false); }
            catch (BlockDeviceException) { continue; } // An unreadable disk counts as missing.
            Superblock? best = null;
            string? why = null;
            for (var c = 0; c < OnDiskFormat.SuperblockCopies; c++)
            {
                Superblock? sb = Superblock.TryRead(
                    buffer.AsSpan(c * OnDiskFormat.SuperblockBytes, OnDiskFormat.SuperblockBytes), out var error);
                why ??= error;
                if (sb is not null && sb.MemberIndex == i) allCopies.Add(sb);
                if (sb is not null && (best is null || sb.Generation > best.Generation)) best = sb;
            }
            if (best is null)
                throw new VolumeFormatException(
                    $"device {d.Name} given as member {i} has no valid superblock: {why}.", d.Name, i);
            found[i] = best;
            devices[i] = d;
        }
        return (found, devices, allCopies);
    }

    /// <summary>
    /// Refuses, by name, a given disk that is foreign, in the wrong position, of another geometry, stale, or too small.
    /// </summary>
    private static void CheckAssembledMembers(
        Superblock?[] found,
        IBlockDevice?[] devices,
        Superblock authority,
        MemberRecord[] table)
    {
        VolumeGeometry g = authority.Geometry;
        for (var i = 0; i < found.Length; i++)
        {
            Superblock? sb = found[i];
            if (sb is null) continue;
            var name = devices[i]!.Name;
            if (sb.VolumeId != authority.VolumeId)
                throw new VolumeFormatException(
                    $"device {name} given as member {i} belongs to volume '{sb.VolumeName}' ({sb.VolumeId}), not '{authority.VolumeName}' ({authority.VolumeId}): a foreign disk.",
                    name,
                    i);
            if (sb.MemberIndex != i)
                throw new VolumeFormatException(
                    $"device {name} holds member {sb.MemberIndex} of '{authority.VolumeName}' but was given as member {i}: wrong position.",
                    name,
                    i);
            if (sb.Geometry != g || sb.StripeCount != authority.StripeCount)
                throw new VolumeFormatException(
                    $"device {name} (member {i}) records geometry {sb.Geometry} with {sb.StripeCount} stripes; the volume has {g} with {authority.StripeCount}.",
                    name,
                    i);
            MemberRecord expected = table[i];
            if (sb.Members[i].MemberId != expected.MemberId)
                throw new VolumeFormatException(
                    $"device {name} was member {i} of '{authority.VolumeName}' until it was replaced (generation {sb.Generation}; the volume is at {authority.Generation}): a stale disk.",
                    name,
                    i);
            if (expected.State is MemberState.Failed)
                throw new VolumeFormatException(
                    $"device {name} (member {i}) was failed at or before generation {authority.Generation} (its own superblock says {sb.Generation}): a stale disk; replace it.",
                    name,
                    i);
            if (devices[i]!.CapacityBytes
                < OnDiskFormat.DataOffsetBytes + authority.StripeCount * OnDiskFormat.ChunkStrideBytes(
                    g.ChunkSizeBytes) + OnDiskFormat.PartialParityAreaBytes(authority.PartialParitySlotBytes))
                throw new VolumeFormatException(
                    $"device {name} (member {i}) is {devices[i]!.CapacityBytes} bytes, smaller than the volume's layout needs.",
                    name,
                    i);
        }
    }

    /// <summary>
    /// Takes member <paramref name="memberIndex"/> out of service (an operator's decision or an I/O
    /// error). The surviving superblocks record it, so the disk is refused as stale later.
    /// </summary>
    public async ValueTask FailMemberAsync(
        int memberIndex,
        string reason,
        CancellationToken cancellationToken = default)
    {
        CheckMember(memberIndex);
        if (await MarkFailedAsync(memberIndex, reason, cancellationToken).ConfigureAwait(false) is false)
            throw new InvalidOperationException($"member {memberIndex} is already {_states[memberIndex]}.");
    }

    /// <summary>
    /// Puts <paramref name="replacement"/> in place of a failed or missing member and marks it
    /// rebuilding; run <see cref="RebuildAsync"/> to fill it. I/O continues meanwhile.
    /// </summary>
    public async ValueTask ReplaceMemberAsync(
        int memberIndex,
        IBlockDevice replacement,
        CancellationToken cancellationToken = default)
    {
        CheckMember(memberIndex);
        ArgumentNullException.ThrowIfNull(replacement);
        if (Geometry.MaxFailedMembers == 0)
            throw new InvalidOperationException(
                $"{Geometry.Level} has no redundancy; a lost member cannot be rebuilt.");
        var needed = MemberBytesNeeded;
        if (replacement.CapacityBytes < needed)
            throw new ArgumentException(
                $"{replacement.Name} holds {replacement.CapacityBytes} bytes; member {memberIndex} needs at least {needed}.",
                nameof(replacement));
        if (VolumeGeometry.BlockSizeBytes % replacement.SectorSizeBytes != 0)
            throw new ArgumentException(
                $"{replacement.Name}: sector size {replacement.SectorSizeBytes} does not divide {VolumeGeometry.BlockSizeBytes}.",
                nameof(replacement));
        lock (_stateGate)
        {
            if (_states[memberIndex] is not (MemberState.Failed or MemberState.Missing))
                throw new InvalidOperationException(
                    $"member {memberIndex} is {_states[memberIndex]}; only a failed or missing member can be replaced (fail it first).");
            foreach (IBlockDevice? d in _devices)
                if (ReferenceEquals(d, replacement)
                    || (d is not null
                        && d.Name == replacement.Name
                        && _states[Array.IndexOf(_devices, d)] != MemberState.Failed))
                    throw new ArgumentException(
                        $"{replacement.Name} is already a member of this volume.", nameof(replacement));
        }
        // Its intent and away pages from an earlier use would be read as marks of this volume's writers.
        var zeros = new byte[OnDiskFormat.BitmapAreasBytes];
        await replacement.WriteAsync(OnDiskFormat.IntentOffsetBytes, zeros, cancellationToken).ConfigureAwait(false);
        Guid newId = Guid.NewGuid();
        var attach = new IBlockDevice?[_memberCount];
        attach[memberIndex] = replacement;
        // Checked again on the superblocks as they are now: another opener may have replaced it already.
        await UpdateSuperblocksAsync(table =>
        {
            MemberRecord r = table[memberIndex];
            if (r.MemberId == newId) return;
            if (r.State is not (MemberState.Failed or MemberState.Missing))
                throw new InvalidOperationException(
                    $"member {memberIndex} is {r.State} in the superblocks (another opener changed it); only a failed or missing member can be replaced.");
            table[memberIndex] = new MemberRecord(newId, MemberState.Rebuilding, 0);
        }, attach, fresh: false, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        CheckUsable();
        await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
        await _intent.ClearIdleAsync(cancellationToken, beforeClear: r => KeepForAwayAsync(r, cancellationToken))
            .ConfigureAwait(false);
        await ClearAwayIfAllPresentAsync(cancellationToken).ConfigureAwait(false);
        await RefreshIfDueAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Flushes every writable member, whatever this opener wrote (<see cref="FlushAsync"/> flushes only the members it
    /// wrote since their last flush). A member's flush makes durable every completed write to it, this process's or
    /// another's (an fsync covers the file, or the serving host's file for a member on another host): a silo that
    /// died leaves its acknowledged writes in the kernel's cache, and another opener's flush of every member makes
    /// them durable.
    /// </summary>
    public async ValueTask FlushEveryMemberAsync(CancellationToken cancellationToken = default)
    {
        CheckUsable();
        var tasks = new List<Task>(_memberCount);
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice? d = _devices[m];
            if (d is null || !IsWritable(m)) continue;
            tasks.Add(FlushOneAsync(m, d, Volatile.Read(ref _writesDone[m]), cancellationToken));
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
        ThrowIfFailed();
    }

    /// <summary>
    /// Flushes, clears this writer's intent bits, and stops accepting I/O. Member devices stay open (the caller owns
    /// them).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (Health == VolumeHealth.Failed) return;
        try
        {
            await FlushMembersAsync(CancellationToken.None).ConfigureAwait(false);
            await _intent.ClearIdleAsync(CancellationToken.None, beforeClear: r => KeepForAwayAsync(r, CancellationToken.None))
                .ConfigureAwait(false);
        }
        catch (IOException)
        {
            // A member failing at shutdown leaves its bits set; the next assembly resyncs those stripes.
        }
    }

    /// <summary>
    /// Flushes every writable member with a completed write that no flush has covered yet. A random write of a durable
    /// RAID-5 touches two members of five; the three others (four of them on other hosts, for a volume across hosts)
    /// need no flush for it.
    /// </summary>
    private ValueTask FlushMembersAsync(CancellationToken cancellationToken) => FlushMembersAsync(0, cancellationToken);

    /// <summary>
    /// <see cref="FlushMembersAsync(CancellationToken)"/>, but for the members in <paramref name="except"/> (bit m:
    /// member m), which a durable write has just flushed.
    /// </summary>
    private async ValueTask FlushMembersAsync(ulong except, CancellationToken cancellationToken)
    {
        var tasks = new List<Task>(_memberCount);
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice? d = _devices[m];
            if (d is null || !IsWritable(m) || (except & (1UL << m)) != 0) continue;
            var done = Volatile.Read(ref _writesDone[m]);
            if (done <= Volatile.Read(ref _writesFlushed[m])) continue;
            tasks.Add(FlushOneAsync(m, d, done, cancellationToken));
        }
        await Task.WhenAll(tasks).ConfigureAwait(false);
        ThrowIfFailed();
    }

    /// <summary>Counts a completed data-path write of member <paramref name="m"/> (one a later flush must cover).</summary>
    private void NoteWriteDone(int m) => Interlocked.Increment(ref _writesDone[m]);

    /// <param name="m">The member.</param>
    /// <param name="d">Its device.</param>
    /// <param name="covers">Member writes completed before the flush began; the flush makes them all durable.</param>
    /// <param name="cancellationToken">Cancels the flush.</param>
    private async Task FlushOneAsync(int m, IBlockDevice d, long covers, CancellationToken cancellationToken)
    {
        try { await d.FlushAsync(cancellationToken).ConfigureAwait(false); }
        catch (BlockDeviceException e)
        {
            await MarkLostAsync(m, e, cancellationToken).ConfigureAwait(false);
            return;
        }
        // Flushes may finish out of order: keep the highest count covered.
        long seen;
        while ((seen = Volatile.Read(ref _writesFlushed[m])) < covers
               && Interlocked.CompareExchange(ref _writesFlushed[m], covers, seen) != seen)
        {
        }
    }

    // ----- member state -----

    private bool IsWritable(int m)
    {
        MemberState s = _states[m];
        return s is MemberState.Active or MemberState.Rebuilding or MemberState.Resyncing;
    }

    /// <summary>A member takes part in stripe <paramref name="stripe"/>: active, or rebuilt past it.</summary>
    private bool IsUsable(int m, long stripe)
    {
        MemberState s = _states[m];
        return s == MemberState.Active
            || (s is MemberState.Rebuilding or MemberState.Resyncing && stripe < Volatile.Read(ref _cursors[m]));
    }

    /// <summary>
    /// Takes member <paramref name="m"/> out of service after <paramref name="error"/>: away (missing) when its device
    /// could not be reached at all, which says nothing of the disk, failed on any other error.
    /// </summary>
    private ValueTask<bool> MarkLostAsync(int m, BlockDeviceException error, CancellationToken cancellationToken) =>
        error is MemberUnreachableException
            ? MarkStateAsync(m, MemberState.Missing, $"away: {error.Message}", cancellationToken)
            : MarkStateAsync(m, MemberState.Failed, error.Message, cancellationToken);

    private ValueTask<bool> MarkFailedAsync(int m, string reason, CancellationToken cancellationToken) =>
        MarkStateAsync(m, MemberState.Failed, reason, cancellationToken);

    private async ValueTask<bool> MarkStateAsync(
        int m,
        MemberState state,
        string reason,
        CancellationToken cancellationToken)
    {
        lock (_stateGate)
        {
            if (_states[m] is MemberState.Failed or MemberState.Missing) return false;
            _states[m] = state;
            _reasons[m] = reason;
        }
        // Also adopts what other openers recorded meanwhile. Best effort: the survivors' superblocks may be
        // failing too, or the coordinator unreachable; the failure stays in this view and is merged into
        // the next update.
        try { await WriteSuperblocksAsync(cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (e is not OperationCanceledException) { }
        return true;
    }

    private void ThrowIfFailed()
    {
        if (Health == VolumeHealth.Failed)
            throw new VolumeDataLossException(
                $"volume '{Name}' has failed: {string.Join("; ", Members.Where(m => m.State is MemberState.Failed or MemberState.Missing).Select(m => $"member {m.Index} {m.State} ({m.Reason ?? "absent"})"))}.");
    }

    private void CheckUsable()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ThrowIfFailed();
    }

    private void CheckMember(int memberIndex)
    {
        if ((uint)memberIndex >= (uint)_memberCount)
            throw new ArgumentOutOfRangeException(nameof(memberIndex), memberIndex, $"allowed: 0..{_memberCount - 1}.");
    }

    private static async Task WriteAndFlushAsync(
        IBlockDevice device,
        long offset,
        byte[] block,
        CancellationToken cancellationToken)
    {
        await device.WriteAsync(offset, block, cancellationToken).ConfigureAwait(false);
        await device.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    // ----- write intent -----

    private ValueTask PersistIntentPageAsync(ReadOnlyMemory<byte> page, CancellationToken cancellationToken) =>
        PersistSlotPageAsync(OnDiskFormat.IntentOffsetBytes, page, cancellationToken);

    /// <summary>Writes this opener's page of the bitmap area at <paramref name="areaOffsetBytes"/> to every writable
    /// member and flushes them.</summary>
    private async ValueTask PersistSlotPageAsync(
        long areaOffsetBytes,
        ReadOnlyMemory<byte> page,
        CancellationToken cancellationToken)
    {
        var offset = areaOffsetBytes + (long)_options.WriterSlot * OnDiskFormat.IntentSlotBytes;
        var writes = new List<(int, Task)>();
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice? d = _devices[m];
            if (d is null || !IsWritable(m)) continue;
            writes.Add((m, WriteAndFlushAsync(d, offset, page.ToArray(), cancellationToken)));
        }
        var ok = 0;
        foreach ((var m, Task t) in writes)
        {
            try { await t.ConfigureAwait(false); ok++; }
            catch (BlockDeviceException e)
            {
                await MarkLostAsync(m, e, cancellationToken).ConfigureAwait(false);
            }
        }
        if (ok == 0)
            throw new VolumeDataLossException(
                $"volume '{Name}': the bitmap page at {offset} could not be written to any member.");
    }

    /// <summary>
    /// Write-hole recovery for this opener: resyncs the stripes marked in its writer slot (every slot
    /// when <see cref="RaidVolumeOptions.RecoverAllWriterSlots"/>). <see cref="AssembleAsync"/> already does this unless
    /// <see cref="RaidVolumeOptions.RecoverOnAssemble"/> is off.
    /// </summary>
    /// <returns>The number of stripes resynced.</returns>
    public async ValueTask<long> RecoverAsync(CancellationToken cancellationToken = default)
    {
        CheckUsable();
        if (!_options.RecoverAllWriterSlots)
            return await RecoverWriterSlotAsync(_options.WriterSlot, cancellationToken).ConfigureAwait(false);
        long total = 0;
        for (var slot = 0; slot < OnDiskFormat.IntentSlotCount; slot++)
            total += await RecoverWriterSlotAsync(slot, cancellationToken).ConfigureAwait(false);
        return total;
    }

    /// <summary>
    /// The stripe ranges writer slot <paramref name="slot"/>'s intent bitmap marks on any member: what
    /// <see cref="RecoverWriterSlotAsync"/> would resync. Changes nothing; a cluster locks just these stripes before it
    /// recovers a dead writer's slot, instead of the whole volume.
    /// </summary>
    public async ValueTask<IReadOnlyList<(long First, long End)>> MarkedStripesOfSlotAsync(
        int slot,
        CancellationToken cancellationToken = default)
    {
        // A slot's recovery starts here: the dead writer's last partial-parity entries may be newer than this opener's
        // reading of the rings.
        ForgetPartialParityIndex();
        var merged = await ReadWriterSlotAsync(slot, cancellationToken).ConfigureAwait(false);
        return [.. WriteIntentLog.MarkedStripes(merged, StripeCount, _intent.RegionStripes)];
    }

    /// <summary>Writer slot <paramref name="slot"/>'s intent bitmap, merged (OR) over the writable members.</summary>
    private async ValueTask<byte[]> ReadWriterSlotAsync(int slot, CancellationToken cancellationToken)
    {
        if ((uint)slot >= OnDiskFormat.IntentSlotCount)
            throw new ArgumentOutOfRangeException(
                nameof(slot), slot, $"allowed: 0..{OnDiskFormat.IntentSlotCount - 1}.");
        var offset = OnDiskFormat.IntentOffsetBytes + (long)slot * OnDiskFormat.IntentSlotBytes;
        var merged = new byte[OnDiskFormat.IntentSlotBytes];
        var page = new byte[OnDiskFormat.IntentSlotBytes];
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice? d = _devices[m];
            if (d is null || !IsWritable(m)) continue;
            try { await d.ReadAsync(offset, page, cancellationToken).ConfigureAwait(false); }
            catch (BlockDeviceException e)
            {
                await MarkLostAsync(m, e, cancellationToken).ConfigureAwait(false);
                continue;
            }
            for (var i = 0; i < page.Length; i++) merged[i] |= page[i];
        }
        return merged;
    }

    /// <summary>
    /// Resyncs every stripe marked in writer slot <paramref name="slot"/>'s intent bitmap (on any
    /// member), then clears it. Call it for a writer that died while the rest of the cluster runs,
    /// holding that writer's stripe locks; <see cref="AssembleAsync"/> calls it for this opener.
    /// </summary>
    /// <returns>The number of stripes resynced.</returns>
    public async ValueTask<long> RecoverWriterSlotAsync(int slot, CancellationToken cancellationToken = default)
    {
        var merged = await ReadWriterSlotAsync(slot, cancellationToken).ConfigureAwait(false);
        if (Array.TrueForAll(merged, b => b == 0)) return 0;
        ForgetPartialParityIndex();
        long resynced = 0;
        foreach ((var first, var end) in WriteIntentLog.MarkedStripes(merged, StripeCount, _intent.RegionStripes))
            resynced += await ResyncStripesAsync(first, end, cancellationToken).ConfigureAwait(false);
        await ClearWriterSlotAsync(slot, cancellationToken).ConfigureAwait(false);
        return resynced;
    }

    /// <summary>
    /// Resyncs stripes [<paramref name="firstStripe"/>, <paramref name="endStripe"/>): part of a writer slot's marks,
    /// for a cluster that recovers a dead writer's slot one partition at a time, holding only that partition's locks.
    /// Leaves the slot's marks; <see cref="ClearWriterSlotAsync"/> clears them once every marked stripe is resynced.
    /// </summary>
    /// <returns>The number of stripes resynced.</returns>
    public async ValueTask<long> ResyncStripesAsync(
        long firstStripe,
        long endStripe,
        CancellationToken cancellationToken = default)
    {
        CheckUsable();
        if (firstStripe < 0 || endStripe <= firstStripe || endStripe > StripeCount)
            throw new ArgumentOutOfRangeException(
                nameof(endStripe),
                $"stripes {firstStripe}..{endStripe} (end exclusive); allowed: 0 <= first < end <= {StripeCount}.");
        for (var s = firstStripe; s < endStripe; s++)
            await ResyncStripeAsync(s, cancellationToken).ConfigureAwait(false);
        return endStripe - firstStripe;
    }

    /// <summary>
    /// Ends a writer slot's recovery once every stripe it marks was resynced: flushes the members, then clears the
    /// slot's marks (this opener's own slot keeps the marks of its writes in flight).
    /// </summary>
    public async ValueTask ClearWriterSlotAsync(int slot, CancellationToken cancellationToken = default)
    {
        if ((uint)slot >= OnDiskFormat.IntentSlotCount)
            throw new ArgumentOutOfRangeException(
                nameof(slot), slot, $"allowed: 0..{OnDiskFormat.IntentSlotCount - 1}.");
        var offset = OnDiskFormat.IntentOffsetBytes + (long)slot * OnDiskFormat.IntentSlotBytes;
        await FlushMembersAsync(cancellationToken).ConfigureAwait(false);
        if (slot == _options.WriterSlot && _options.WriteIntentLog)
        {
            // Our own slot while we may be writing: keep the marks of our writes in flight.
            await _intent.RepersistAsync(cancellationToken).ConfigureAwait(false);
            return;
        }
        // A member away may lack the dead writer's last writes (its host's power may have gone with them): its
        // catch-up must cover what the slot marks, which is cleared here.
        if (!NoneAway())
        {
            var marked = await ReadWriterSlotAsync(slot, cancellationToken).ConfigureAwait(false);
            foreach (var (first, end) in WriteIntentLog.MarkedStripes(marked, StripeCount, _intent.RegionStripes))
                await MarkAwayAsync(first, end, cancellationToken).ConfigureAwait(false);
        }
        var page = new byte[OnDiskFormat.IntentSlotBytes];
        for (var m = 0; m < _memberCount; m++)
        {
            IBlockDevice? d = _devices[m];
            if (d is null || !IsWritable(m)) continue;
            try { await WriteAndFlushAsync(d, offset, page, cancellationToken).ConfigureAwait(false); }
            catch (BlockDeviceException e)
            {
                await MarkLostAsync(m, e, cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
