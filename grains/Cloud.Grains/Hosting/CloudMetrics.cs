using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Diagnostics;
using Cloud.Grains.Delegation;

namespace Cloud.Grains.Hosting;

/// <summary>
/// The "Cloud" meter: the first server's I/O (operations, bytes, latency), delegation decisions, lock waits, the RAID
/// worker's queue, and rebuild and scrub progress. OpenTelemetry subscribes to it in the silo (ServiceDefaults).
/// </summary>
public static class CloudMetrics
{
    /// <summary>The meter name to subscribe to.</summary>
    public const string MeterName = "Cloud";

    private static readonly Meter Meter = new(MeterName);

    /// <summary>Each first-server decision: tag <c>decision</c> = reused | new, tag <c>reason</c> says why.</summary>
    public static readonly Counter<long> DelegationDecisions = Meter.CreateCounter<long>(
        "cloud.delegation.decisions", unit: "{decision}", description: "Delegation target decisions of first servers");

    /// <summary>Activations placed by load-based placement, tag <c>silo</c>.</summary>
    public static readonly Counter<long> Placements = Meter.CreateCounter<long>(
        "cloud.delegation.placements", unit: "{activation}", description: "Delegation units placed by load");

    /// <summary>Replicated copies by outcome (committed, superseded, cancelled, failed).</summary>
    public static readonly Counter<long> WriteOutcomes = Meter.CreateCounter<long>(
        "cloud.worker.writes", unit: "{write}", description: "Replicated copies by outcome");

    /// <summary>Re-delegations after a target failed.</summary>
    public static readonly Counter<long> Redelegations = Meter.CreateCounter<long>(
        "cloud.delegation.redelegations", unit: "{write}", description: "Copies re-sent after their target failed");

    /// <summary>
    /// Front-end requests (tag <c>op</c> = read | write | flush | trim): their rate is the volume's IOPS.
    /// </summary>
    public static readonly Counter<long> IoOperations = Meter.CreateCounter<long>(
        "cloud.io.operations", unit: "{operation}", description: "Front-end requests completed, by operation");

    /// <summary>Bytes read and written through the front end (tag <c>op</c>).</summary>
    public static readonly Counter<long> IoBytes = Meter.CreateCounter<long>(
        "cloud.io.bytes", unit: "By", description: "Bytes read and written through the front end");

    /// <summary>
    /// Front-end request latency (tag <c>op</c>), from arrival at the first server to its acknowledgement.
    /// </summary>
    public static readonly Histogram<double> IoDuration = Meter.CreateHistogram<double>(
        "cloud.io.duration", unit: "s", description: "Front-end request latency");

    /// <summary>Time from asking a partition-lock grain for a stripe lock to holding it (tag <c>mode</c>).</summary>
    public static readonly Histogram<double> LockWait = Meter.CreateHistogram<double>(
        "cloud.lock.wait", unit: "s", description: "Wait for partition stripe locks");

    /// <summary>Stripes scrubbed, and parity mismatches and checksum errors found (tag <c>kind</c>).</summary>
    public static readonly Counter<long> ScrubStripes = Meter.CreateCounter<long>(
        "cloud.scrub.stripes", unit: "{stripe}", description: "Stripes checked by scrub, and problems found (tag kind)");

    /// <summary>
    /// Bytes written to members by rebuilds (tag <c>kind</c>: <c>rebuild</c> of a replacement, <c>catch-up</c> of a
    /// member whose host returned, which writes only the stripes recorded while it was away).
    /// </summary>
    public static readonly Counter<long> RebuildBytes = Meter.CreateCounter<long>(
        "cloud.rebuild.bytes", unit: "By", description: "Bytes written to rebuilding or catching-up members (tag kind)");

    private static readonly ConcurrentDictionary<SiloUsage, bool> Usages = new(ReferenceEqualityComparer.Instance);
    private static readonly ConcurrentDictionary<string, (long Done, long Total)> Rebuilds = new(
        StringComparer.Ordinal);

    /// <summary>Copies queued or running in each RAID worker of this process (one measurement per silo).</summary>
    public static readonly ObservableGauge<int> QueueDepth = Meter.CreateObservableGauge(
        "cloud.worker.queue_depth", () => Usages.Keys.Select(u => new Measurement<int>(u.QueueDepth)), unit: "{write}",
        description: "Replicated copies queued or running in the RAID worker");

    /// <summary>Bytes of delegated copies waiting in each RAID worker of this process.</summary>
    public static readonly ObservableGauge<long> PendingDelegatedBytes = Meter.CreateObservableGauge(
        "cloud.worker.pending_bytes", ()
            => Usages.Keys.Select(u => new Measurement<long>(u.PendingDelegatedBytes)), unit: "By",
        description: "Bytes of replicated copies not yet written");

    /// <summary>Completed fraction of each rebuild running here (tag <c>volume</c>); 1 once it ends.</summary>
    public static readonly ObservableGauge<double> RebuildProgress = Meter.CreateObservableGauge(
        "cloud.rebuild.progress", () => Rebuilds.Select(r => new Measurement<double>(
            r.Value.Total == 0 ? 1.0 : (double)r.Value.Done / r.Value.Total, new KeyValuePair<string, object?>(
                "volume", r.Key))),
        unit: "1", description: "Completed fraction of rebuilds");

    internal static void Track(SiloUsage usage) => Usages.TryAdd(usage, true);

    internal static void Untrack(SiloUsage usage) => Usages.TryRemove(usage, out _);

    internal static void ReportRebuild(string volumeName, long done, long total)
        => Rebuilds[volumeName] = (done, total);

    /// <summary>
    /// Counts one finished front-end request that began at <paramref name="startTimestamp"/>
    /// (<see cref="Stopwatch.GetTimestamp"/>).
    /// </summary>
    internal static void RecordIo(string op, long bytes, long startTimestamp)
    {
        var tag = new KeyValuePair<string, object?>("op", op);
        IoOperations.Add(1, tag);
        if (bytes > 0) IoBytes.Add(bytes, tag);
        IoDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, tag);
    }
}
