namespace Cloud.Storage.Volumes;

/// <summary>
/// Room in one writer slot's partial-parity ring on one member: entries of writes in flight hold their byte range until
/// the stripe write they protect has ended; a writer that finds no room waits for one to end. First fit from the start
/// of the ring, so that ended entries are overwritten soon and few stale ones stay readable.
/// </summary>
internal sealed class PartialParityRing(long bytes)
{
    private readonly object _gate = new();
    private readonly List<(long Start, long End)> _used = [];
    private readonly List<TaskCompletionSource> _waiters = [];

    /// <summary>Bytes of the ring.</summary>
    public long Bytes => bytes;

    /// <summary>Entries in flight, for tests.</summary>
    public int InUse { get { lock (_gate) return _used.Count; } }

    /// <summary>Takes <paramref name="length"/> bytes of the ring (at most half of it); returns where they start.</summary>
    public async ValueTask<long> TakeAsync(int length, CancellationToken cancellationToken)
    {
        if (length <= 0 || length > bytes)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"allowed: 1..{bytes}.");
        while (true)
        {
            TaskCompletionSource wait;
            lock (_gate)
            {
                if (TryPlace(length, out var at)) return at;
                wait = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.Add(wait);
            }
            await wait.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Gives back the range that starts at <paramref name="start"/>.</summary>
    public void Give(long start)
    {
        TaskCompletionSource[] woken;
        lock (_gate)
        {
            var i = _used.FindIndex(u => u.Start == start);
            if (i >= 0) _used.RemoveAt(i);
            woken = [.. _waiters];
            _waiters.Clear();
        }
        foreach (var w in woken) w.TrySetResult();
    }

    /// <summary>
    /// Takes <paramref name="length"/> bytes in the ring of each member of <paramref name="members"/> (-1: none), in
    /// member order, not in the order given: a writer holding room on one member while it waits for another's then
    /// never waits on a writer that holds the second and waits for the first (RAID-6 puts P and Q of its stripes on every
    /// pair of members). Returns where each landed, in the order given (-1 for none).
    /// </summary>
    public static async ValueTask<long[]> TakeInMemberOrderAsync(
        PartialParityRing[] rings,
        int[] members,
        int length,
        CancellationToken cancellationToken)
    {
        var at = new long[members.Length];
        Array.Fill(at, -1L);
        var order = Enumerable.Range(0, members.Length).Where(i => members[i] >= 0).OrderBy(i => members[i]).ToArray();
        try
        {
            foreach (var i in order)
                at[i] = await rings[members[i]].TakeAsync(length, cancellationToken).ConfigureAwait(false);
            return at;
        }
        catch
        {
            for (var i = 0; i < at.Length; i++) if (at[i] >= 0) rings[members[i]].Give(at[i]);
            throw;
        }
    }

    private bool TryPlace(int length, out long at)
    {
        // _used is kept in start order: the first gap that holds the entry takes it.
        long from = 0;
        for (var i = 0; i <= _used.Count; i++)
        {
            var end = i < _used.Count ? _used[i].Start : bytes;
            if (end - from >= length)
            {
                _used.Insert(i, (from, from + length));
                at = from;
                return true;
            }
            if (i < _used.Count) from = _used[i].End;
        }
        at = -1;
        return false;
    }
}
