using System.Diagnostics;
using Cloud.Storage.Format;

namespace Cloud.Storage.Volumes;

/// <summary>
/// One writer's write-intent bitmap (see docs/WRITE-HOLE.md): a bit per region of stripes, set and
/// made durable on the members before any stripe of the region is written, cleared once the region
/// is idle and its writes were flushed. After a crash the set bits name every stripe that may be
/// half-written, and only those are resynced. The bitmap is this writer's alone (one slot per
/// writer), so no sector of it is shared with another process.
/// </summary>
internal sealed class WriteIntentLog
{
    /// <summary>Persists the page to every usable member and flushes them.</summary>
    public delegate ValueTask PersistPage(ReadOnlyMemory<byte> page, CancellationToken cancellationToken);

    private readonly object _gate = new();
    private readonly SemaphoreSlim _persistGate = new(1, 1);
    private readonly byte[] _page = new byte[OnDiskFormat.IntentSlotBytes];
    private readonly byte[] _durable = new byte[OnDiskFormat.IntentSlotBytes];
    private readonly int[] _inFlight;
    private readonly PersistPage _persist;
    private readonly bool _enabled;
    private readonly long _stripeCount;

    /// <summary>
    /// Regions with a write, since their mark was last cleared, that reached every member of its stripe (none was away
    /// then): <see cref="NoteReachedEvery"/>.
    /// </summary>
    private readonly bool[] _reachedEvery;

    public WriteIntentLog(long stripeCount, long regionStripes, bool enabled, PersistPage persist)
    {
        RegionStripes = regionStripes;
        _stripeCount = stripeCount;
        _inFlight = new int[(stripeCount + RegionStripes - 1) / RegionStripes];
        _reachedEvery = new bool[_inFlight.Length];
        _persist = persist;
        _enabled = enabled;
    }

    /// <summary>Stripes per bit.</summary>
    public long RegionStripes { get; }

    /// <summary>Regions currently marked on disk.</summary>
    public int DirtyRegions
    {
        get
        {
            lock (_gate)
            {
                var n = 0;
                foreach (var b in _durable) n += System.Numerics.BitOperations.PopCount(b);
                return n;
            }
        }
    }

    /// <summary>Marks the stripe's region before a write; returns once the mark is durable.</summary>
    public async ValueTask BeginAsync(long stripe, CancellationToken cancellationToken)
    {
        if (!_enabled) return;
        var region = (int)(stripe / RegionStripes);
        lock (_gate)
        {
            _inFlight[region]++;
            if (IsSet(_durable, region)) return;
        }
        try
        {
            await _persistGate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (IsSet(_durable, region)) return;
                lock (_gate) Set(_page, region, true);
                await _persist(_page, cancellationToken).ConfigureAwait(false);
                lock (_gate) Set(_durable, region, true);
            }
            finally { _persistGate.Release(); }
        }
        catch
        {
            End(stripe);
            throw;
        }
    }

    /// <summary>Ends a write begun with <see cref="BeginAsync"/>.</summary>
    public void End(long stripe)
    {
        if (!_enabled) return;
        var region = (int)(stripe / RegionStripes);
        lock (_gate)
        {
            Debug.Assert(_inFlight[region] > 0, $"region {region} ended more writes than it began");
            _inFlight[region]--;
        }
    }

    /// <summary>
    /// Marks the stripe's region and returns once the mark is durable, without keeping it busy: for a record whose bits
    /// outlive the write (the away record), cleared only by <see cref="ClearIdleAsync"/> when nothing needs them.
    /// </summary>
    public async ValueTask MarkAsync(long stripe, CancellationToken cancellationToken)
    {
        if (!_enabled || IsMarked(stripe)) return;
        await BeginAsync(stripe, cancellationToken).ConfigureAwait(false);
        End(stripe);
    }

    /// <summary>
    /// Notes that a write of the stripe, begun with <see cref="BeginAsync"/>, goes to every member of the stripe (none
    /// is away): until the region's mark is cleared, a member that goes away later may lack it unless it was flushed.
    /// </summary>
    /// <remarks>
    /// Without the lock, on every stripe written: a note that lands just after its region was cleared only makes a later
    /// clear of the region hand it to the away record once more than needed.
    /// </remarks>
    public void NoteReachedEvery(long stripe)
    {
        if (!_enabled) return;
        ref var noted = ref _reachedEvery[(int)(stripe / RegionStripes)];
        if (!Volatile.Read(ref noted)) Volatile.Write(ref noted, true);
    }

    /// <summary>Whether the stripe's region is marked durably (or being marked) by this writer.</summary>
    public bool IsMarked(long stripe)
    {
        var region = (int)(stripe / RegionStripes);
        lock (_gate) return IsSet(_durable, region);
    }

    /// <summary>
    /// Adopts a page read from disk as this writer's marks, so that the first new mark does not overwrite marks an
    /// earlier user of the slot left there. Call it before any write.
    /// </summary>
    public void Load(ReadOnlySpan<byte> page)
    {
        if (page.Length != _page.Length)
            throw new ArgumentException($"a bitmap page is {_page.Length} bytes, not {page.Length}.", nameof(page));
        lock (_gate)
        {
            page.CopyTo(_page);
            page.CopyTo(_durable);
        }
    }

    /// <summary>
    /// Clears the bits of idle regions. The caller must have flushed the members first, so the
    /// writes those bits covered are durable. With <paramref name="allowed"/>, nothing is cleared unless it returns
    /// true when asked under the persist gate, so that a mark persisted just before is never lost to a decision taken
    /// earlier. <paramref name="beforeClear"/> hears the stripe ranges (end exclusive) of the regions about to be
    /// cleared that had a write reaching every member (<see cref="NoteReachedEvery"/>), under the persist gate, and the
    /// bits are cleared once it returns: a caller whose flush did not reach every member records there what a member
    /// left out since may lack.
    /// </summary>
    public async ValueTask ClearIdleAsync(
        CancellationToken cancellationToken,
        Func<bool>? allowed = null,
        Func<IReadOnlyList<(long First, long End)>, ValueTask>? beforeClear = null)
    {
        if (!_enabled) return;
        await _persistGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (allowed is not null && !allowed()) return;
            bool[]? handed = null;
            if (beforeClear is not null)
            {
                handed = new bool[_inFlight.Length];
                var idle = new List<(long First, long End)>();
                lock (_gate)
                {
                    for (var r = 0; r < _inFlight.Length; r++)
                    {
                        if (_inFlight[r] != 0 || !IsSet(_durable, r) || !_reachedEvery[r]) continue;
                        handed[r] = true;
                        idle.Add((r * RegionStripes, Math.Min(_stripeCount, (r + 1) * RegionStripes)));
                    }
                }
                if (idle.Count > 0) await beforeClear(idle).ConfigureAwait(false);
            }
            var changed = false;
            lock (_gate)
            {
                for (var r = 0; r < _inFlight.Length; r++)
                {
                    if (_inFlight[r] != 0 || !IsSet(_durable, r)) continue;
                    // A region busy when the caller was told, idle now, and written to every member is left for the
                    // next clear, so that the caller hears of it first.
                    if (handed is not null && _reachedEvery[r] && !handed[r]) continue;
                    // Clear the durable bit first: a writer arriving now waits on the persist gate
                    // (held here) and sets the bit again after this page is written.
                    Set(_durable, r, false);
                    Set(_page, r, false);
                    _reachedEvery[r] = false;
                    changed = true;
                }
            }
            if (changed) await _persist(_page, cancellationToken).ConfigureAwait(false);
        }
        finally { _persistGate.Release(); }
    }

    /// <summary>Writes the in-memory page again (after a recovery rewrote this slot on disk).</summary>
    public async ValueTask RepersistAsync(CancellationToken cancellationToken)
    {
        await _persistGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try { await _persist(_page, cancellationToken).ConfigureAwait(false); }
        finally { _persistGate.Release(); }
    }

    /// <summary>The stripe ranges a persisted bitmap page marks.</summary>
    public static IEnumerable<(long First, long End)> MarkedStripes(
        ReadOnlyMemory<byte> page,
        long stripeCount,
        long regionStripes)
    {
        var regions = (stripeCount + regionStripes - 1) / regionStripes;
        for (var r = 0; r < regions; r++)
            if (IsSet(page.Span, r)) yield return (r * regionStripes, Math.Min(stripeCount, (r + 1) * regionStripes));
    }

    private static bool IsSet(ReadOnlySpan<byte> bits, int region) => (bits[region >> 3] & (1 << (region & 7))) != 0;

    private static void Set(Span<byte> bits, int region, bool value)
    {
        if (value) bits[region >> 3] |= (byte)(1 << (region & 7));
        else bits[region >> 3] &= (byte)~(1 << (region & 7));
    }
}
