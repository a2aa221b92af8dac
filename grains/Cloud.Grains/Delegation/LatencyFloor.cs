namespace Cloud.Grains.Delegation;

/// <summary>
/// The lowest time of a silo's small engine writes over the last one to two windows of <see cref="Window"/>: what a
/// write costs there with no queue in front of it. Queueing and a busy processor raise a silo's average write time
/// (<see cref="SiloUsage.DiskLatencyMs"/>) in proportion to the work it is given, so the average cannot tell a slow
/// disk from a loaded one; the floor can, as a path's minimum round-trip time tells its own delay from its queue. A
/// floor once measured is remembered for <see cref="Memory"/> while the silo writes nothing, so that a silo found slow
/// is not chosen again as soon as its work has left it.
/// </summary>
/// <remarks>Observe is called by any thread; Sample by one (the load publisher).</remarks>
internal sealed class LatencyFloor
{
    /// <summary>The window over which the lowest write time is taken.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(5);

    /// <summary>How long a measured floor is kept after the silo's last small write.</summary>
    public static readonly TimeSpan Memory = TimeSpan.FromSeconds(30);

    /// <summary>Writes larger than this are not timed: their time is the disk's bandwidth, not its latency.</summary>
    public const int MaxTimedBytes = 64 * 1024;

    private long _currentMicros = long.MaxValue;
    private long _previousMicros = long.MaxValue;
    private TimeSpan _windowStart;
    private long _knownMicros;
    private TimeSpan _knownAt;

    /// <summary>Folds one write of <paramref name="bytes"/> that took <paramref name="latency"/> into the window.</summary>
    public void Observe(TimeSpan latency, int bytes)
    {
        if (bytes > MaxTimedBytes) return;
        var sample = Math.Max(0, (long)latency.TotalMicroseconds);
        long current;
        while (sample < (current = Interlocked.Read(ref _currentMicros))
               && Interlocked.CompareExchange(ref _currentMicros, sample, current) != current)
        {
        }
    }

    /// <summary>
    /// The floor in milliseconds at <paramref name="now"/> (a monotonic clock's reading): the lowest write time of
    /// this window and the last, else the last floor measured if within <see cref="Memory"/>, else 0 (unknown).
    /// </summary>
    public double SampleMs(TimeSpan now)
    {
        if (now - _windowStart >= Window)
        {
            _previousMicros = Interlocked.Exchange(ref _currentMicros, long.MaxValue);
            _windowStart = now;
        }
        var floor = Math.Min(_previousMicros, Interlocked.Read(ref _currentMicros));
        if (floor != long.MaxValue)
        {
            (_knownMicros, _knownAt) = (floor, now);
            return floor / 1000.0;
        }
        return _knownMicros > 0 && now - _knownAt < Memory ? _knownMicros / 1000.0 : 0;
    }
}
