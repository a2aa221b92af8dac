using System.Diagnostics;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Delegation;

/// <summary>This silo's live usage, updated by the data path without locks and sampled by the publisher.</summary>
public sealed class SiloUsage : IDisposable
{
    private long _pendingDelegatedBytes;
    private int _queueDepth;
    private long _diskLatencyMicrosEwma;
    private long _schedulingDelayMicrosEwma;
    private long _delegationsReused;
    private long _delegationsNew;
    private long _writesPerformed;
    private long _diskOps;
    private long _diskOpsAtLastDecay;
    private long _lastDecayTicks = Stopwatch.GetTimestamp();
    private readonly long _startTicks = Stopwatch.GetTimestamp();
    private readonly LatencyFloor _writeFloor = new();

    /// <summary>With no disk operations, the latency average halves every this long.</summary>
    public static readonly TimeSpan IdleLatencyHalfLife = TimeSpan.FromSeconds(5);
    private TimeSpan _lastCpu = Process.GetCurrentProcess().TotalProcessorTime;
    private long _lastCpuSampleTicks = Stopwatch.GetTimestamp();

    /// <summary>Publishes this silo's queue in the "Cloud" meter.</summary>
    public SiloUsage() => CloudMetrics.Track(this);

    /// <summary>Stops publishing (the silo's container disposes this singleton when the silo stops).</summary>
    public void Dispose() => CloudMetrics.Untrack(this);

    /// <summary>Bytes of replicated copies this silo holds for others and has not written yet.</summary>
    public long PendingDelegatedBytes => Interlocked.Read(ref _pendingDelegatedBytes);

    /// <summary>Copies queued or running in this silo's RAID worker.</summary>
    public int QueueDepth => Volatile.Read(ref _queueDepth);

    /// <summary>Smoothed member-disk write latency in milliseconds.</summary>
    public double DiskLatencyMs => Interlocked.Read(ref _diskLatencyMicrosEwma) / 1000.0;

    /// <summary>
    /// Smoothed wait of a work item in this process's thread pool before it runs, in milliseconds
    /// (<see cref="SchedulingDelayProbe"/>): near zero on a silo with processor time to spare, tens of milliseconds on
    /// one whose CPU is capped (a cgroup quota used up) or starved by its neighbours. Unlike its CPU percent, which a
    /// capped silo keeps low, this shows the silo cannot keep up.
    /// </summary>
    public double SchedulingDelayMs => Interlocked.Read(ref _schedulingDelayMicrosEwma) / 1000.0;

    /// <summary>Decisions of this silo's first server that kept the last target.</summary>
    public long DelegationsReused => Interlocked.Read(ref _delegationsReused);

    /// <summary>Decisions of this silo's first server that chose a new target.</summary>
    public long DelegationsNew => Interlocked.Read(ref _delegationsNew);

    /// <summary>Copies this silo's RAID worker wrote.</summary>
    public long WritesPerformed => Interlocked.Read(ref _writesPerformed);

    internal void Enqueued(long bytes)
    {
        Interlocked.Add(ref _pendingDelegatedBytes, bytes);
        Interlocked.Increment(ref _queueDepth);
    }

    internal void Dequeued(long bytes)
    {
        Interlocked.Add(ref _pendingDelegatedBytes, -bytes);
        Interlocked.Decrement(ref _queueDepth);
    }

    internal void WritePerformed() => Interlocked.Increment(ref _writesPerformed);

    internal void Decision(bool reused)
        => Interlocked.Increment(ref reused ? ref _delegationsReused : ref _delegationsNew);

    /// <summary>
    /// Folds one disk operation's latency into the average (weight 1/8, like TCP's SRTT, so one outlier does not swing
    /// it).
    /// </summary>
    internal void ObserveDiskLatency(TimeSpan latency)
    {
        Interlocked.Increment(ref _diskOps);
        Fold(ref _diskLatencyMicrosEwma, latency);
    }

    /// <summary>
    /// Times one engine write of <paramref name="bytes"/>: into the average (<see cref="ObserveDiskLatency"/>) and,
    /// when small, into the floor (<see cref="SampleDiskFloorMs"/>).
    /// </summary>
    internal void ObserveWrite(TimeSpan latency, int bytes)
    {
        ObserveDiskLatency(latency);
        _writeFloor.Observe(latency, bytes);
    }

    /// <summary>
    /// The lowest small engine write time lately, in milliseconds (<see cref="LatencyFloor"/>); called once per
    /// publish period.
    /// </summary>
    internal double SampleDiskFloorMs() => _writeFloor.SampleMs(Stopwatch.GetElapsedTime(_startTicks));

    /// <summary>Folds one probe's scheduling delay into its average (weight 1/8).</summary>
    internal void ObserveSchedulingDelay(TimeSpan delay) => Fold(ref _schedulingDelayMicrosEwma, delay);

    private static void Fold(ref long ewmaMicros, TimeSpan latency)
    {
        var sample = (long)latency.TotalMicroseconds;
        long current, next;
        do
        {
            current = Interlocked.Read(ref ewmaMicros);
            next = current + (sample - current) / 8;
        }
        while (Interlocked.CompareExchange(ref ewmaMicros, next, current) != current);
    }

    /// <summary>
    /// Called once per publish period: with no disk operation since the last call the average decays with
    /// <see cref="IdleLatencyHalfLife"/>, so a silo that was slow once and then got no work is tried again instead
    /// of being shunned forever.
    /// </summary>
    internal void DecayIdleLatency()
    {
        var now = Stopwatch.GetTimestamp();
        var elapsed = Stopwatch.GetElapsedTime(_lastDecayTicks, now);
        _lastDecayTicks = now;
        var ops = Interlocked.Read(ref _diskOps);
        if (ops != _diskOpsAtLastDecay) { _diskOpsAtLastDecay = ops; return; }
        var factor = Math.Pow(0.5, elapsed / IdleLatencyHalfLife);
        long current, next;
        do
        {
            current = Interlocked.Read(ref _diskLatencyMicrosEwma);
            next = (long)(current * factor);
        }
        while (Interlocked.CompareExchange(ref _diskLatencyMicrosEwma, next, current) != current);
    }

    /// <summary>Process CPU use since the last call, in percent of all cores.</summary>
    internal double SampleCpuPercent()
    {
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var now = Stopwatch.GetTimestamp();
        var wall = Stopwatch.GetElapsedTime(_lastCpuSampleTicks, now);
        var used = cpu - _lastCpu;
        _lastCpu = cpu;
        _lastCpuSampleTicks = now;
        if (wall <= TimeSpan.Zero) return 0;
        return Math.Clamp(
            100.0 * used.TotalMilliseconds / (wall.TotalMilliseconds * Environment.ProcessorCount), 0, 100);
    }
}
