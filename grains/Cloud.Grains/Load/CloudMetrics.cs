using System.Diagnostics.Metrics;

namespace Cloud.Grains.Load;

/// <summary>The "Cloud" meter: delegation decisions and the data path's work.</summary>
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
}
