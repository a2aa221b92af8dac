using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Delegation;

/// <summary>
/// This silo's copy of the cluster's load table, refreshed by the publisher every period. Placement and the first
/// server read it without a grain call.
/// </summary>
public sealed class LoadTable(IOptions<CloudOptions> options, TimeProvider time)
{
    private readonly CloudOptions _options = options.Value;
    private volatile Snapshot _snapshot = new(
        ImmutableArray<SiloLoad>.Empty, ImmutableDictionary<string, double>.Empty);

    private sealed record Snapshot(
        ImmutableArray<SiloLoad> Entries,
        ImmutableDictionary<string, double> PlacementDebits);

    /// <summary>Every entry as of the last refresh.</summary>
    public ImmutableArray<SiloLoad> Entries => _snapshot.Entries;

    /// <summary>Replaces the table with a freshly published one and clears placement debits.</summary>
    public void Update(ImmutableArray<SiloLoad> entries)
        => _snapshot = new(entries, ImmutableDictionary<string, double>.Empty);

    /// <summary>The fresh entry of a silo (by address or name), or null when it has not published lately.</summary>
    public SiloLoad? Find(string silo)
    {
        var cutoff = time.GetUtcNow() - _options.LoadEntryTimeToLive;
        foreach (var e in _snapshot.Entries)
        {
            if ((e.SiloAddress == silo || e.SiloName == silo) && e.PublishedUtc >= cutoff)
                return e;
        }
        return null;
    }

    /// <summary>
    /// Score including work placed here since the last refresh, so that a burst does not pile onto one silo.
    /// </summary>
    public double EffectiveScore(SiloLoad entry) =>
        entry.Score + _snapshot.PlacementDebits.GetValueOrDefault(entry.SiloAddress);

    /// <summary>Adds one unit to a silo's score until the next refresh.</summary>
    public void Debit(string siloAddress)
    {
        Snapshot current, next;
        do
        {
            current = _snapshot;
            next = current with
            {
                PlacementDebits = current.PlacementDebits.SetItem(
                    siloAddress, current.PlacementDebits.GetValueOrDefault(siloAddress) + 1)
            };
        }
        while (Interlocked.CompareExchange(ref _snapshot, next, current) != current);
    }

    /// <summary>Mean effective score over fresh, non-draining entries.</summary>
    public double MeanScore()
    {
        var cutoff = time.GetUtcNow() - _options.LoadEntryTimeToLive;
        double sum = 0;
        var n = 0;
        foreach (var e in _snapshot.Entries)
        {
            if (e.PublishedUtc < cutoff || e.Draining) continue;
            sum += EffectiveScore(e);
            n++;
        }
        return n == 0 ? 0 : sum / n;
    }

    /// <summary>
    /// True when the score is above both the cluster mean times the overload factor and the minimum score.
    /// </summary>
    public bool IsOverloaded(double score, double mean) =>
        score > _options.OverloadMinimumScore && score > mean * _options.OverloadFactor;

    /// <summary>
    /// Whether the last synchronization target is still appropriate: alive (published lately), eligible (of
    /// <paramref name="requiredHost"/> when the volume's members are that host's files), not draining, not overloaded
    /// against the cluster mean. The reason names the first failed test, or "sticky".
    /// </summary>
    public bool IsAppropriateTarget(string silo, string? requiredHost, out string reason)
    {
        var entry = Find(silo);
        if (entry is null) { reason = "target-gone"; return false; }
        if (requiredHost is not null && entry.HostName != requiredHost) { reason = "target-ineligible"; return false; }
        if (entry.Draining) { reason = "target-draining"; return false; }
        if (IsOverloaded(EffectiveScore(entry), MeanScore())) { reason = "target-overloaded"; return false; }
        reason = "sticky";
        return true;
    }
}
