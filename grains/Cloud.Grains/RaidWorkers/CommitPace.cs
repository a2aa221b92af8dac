namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// A RAID worker's measured pace of finished copies (committed or found superseded), in bytes per second over the last
/// <see cref="Window"/>, and the backlog of acknowledged copies that pace drains in <see cref="BacklogTarget"/>: the
/// bound on bytes queued here before a new non-FUA copy is taken in, like a dirty-page limit sized by the disk's
/// measured write-back rate. A first server acknowledges such a copy once this silo holds it, so without the bound
/// the writers run ahead of the disks: before a kill 60-330 copies waited on each silo, and after it the survivors
/// had over 5,000 (100 MB) to write before new writes flowed again.
/// </summary>
/// <remarks>Thread-safe; every member is read and changed under one lock.</remarks>
public sealed class CommitPace(TimeProvider time)
{
    /// <summary>How far back finished copies count towards the pace.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    /// <summary>The backlog, in time at the measured pace, that acknowledged copies may make here.</summary>
    public static readonly TimeSpan BacklogTarget = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The bound when the pace is slow or unknown (a silo that just started, or whose queue was idle): enough for a
    /// few large writes in flight, so a new silo is not paced to a standstill before it has measured anything.
    /// </summary>
    public const long MinBacklogBytes = 4L << 20;

    private const int BucketCount = 10;
    private readonly Lock _gate = new();
    private readonly long[] _bucketBytes = new long[BucketCount];
    private readonly long[] _bucketSecond = new long[BucketCount];

    /// <summary>Counts a finished copy of <paramref name="bytes"/>.</summary>
    public void Finished(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var second = Second();
        lock (_gate)
        {
            var i = (int)(second % BucketCount);
            if (_bucketSecond[i] != second)
            {
                _bucketSecond[i] = second;
                _bucketBytes[i] = 0;
            }
            _bucketBytes[i] += bytes;
        }
    }

    /// <summary>Bytes finished per second over the last <see cref="Window"/>.</summary>
    public long BytesPerSecond
    {
        get
        {
            var now = Second();
            long total = 0;
            lock (_gate)
            {
                for (var i = 0; i < BucketCount; i++)
                    if (now - _bucketSecond[i] < BucketCount) total += _bucketBytes[i];
            }
            return total / (long)Window.TotalSeconds;
        }
    }

    /// <summary>
    /// The backlog bound: <see cref="BacklogTarget"/> at the measured pace, at least <see cref="MinBacklogBytes"/> and
    /// at most <paramref name="maxBytes"/>.
    /// </summary>
    public long BacklogBytes(long maxBytes)
    {
        var paced = (long)(BytesPerSecond * BacklogTarget.TotalSeconds);
        return Math.Min(maxBytes, Math.Max(MinBacklogBytes, paced));
    }

    private long Second() => time.GetUtcNow().ToUnixTimeSeconds();
}
