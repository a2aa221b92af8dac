using System.Collections.Concurrent;
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
        ImmutableArray<SiloLoad>.Empty, ImmutableDictionary<string, double>.Empty, DateTimeOffset.MinValue);

    private sealed record Snapshot(
        ImmutableArray<SiloLoad> Entries,
        ImmutableDictionary<string, double> PlacementDebits,
        DateTimeOffset UpdatedUtc);

    /// <summary>Every entry as of the last refresh.</summary>
    public ImmutableArray<SiloLoad> Entries => _snapshot.Entries;

    /// <summary>The newest entry ever seen of each silo address, fresh or not (see <see cref="LastKnown"/>).</summary>
    private readonly ConcurrentDictionary<string, SiloLoad> _lastKnown = new();

    /// <summary>Replaces the table with a freshly published one and clears placement debits.</summary>
    public void Update(ImmutableArray<SiloLoad> entries)
    {
        foreach (var e in entries)
            _lastKnown.AddOrUpdate(e.SiloAddress, e, (_, old) => e.PublishedUtc >= old.PublishedUtc ? e : old);
        _snapshot = new(entries, ImmutableDictionary<string, double>.Empty, time.GetUtcNow());
    }

    /// <summary>
    /// The newest entry this silo ever saw of <paramref name="siloAddress"/>, however old: its host and whether it was
    /// draining. The table drops a silo that has not published lately, and starts empty when its grain is placed again
    /// after its silo died, until every silo published once more; a silo the membership still has as active is where
    /// it was then.
    /// </summary>
    public SiloLoad? LastKnown(string siloAddress) => _lastKnown.GetValueOrDefault(siloAddress);

    /// <summary>
    /// Entries published before this are stale. Reckoned from the last refresh when that is older than now: while the
    /// table grain is unreachable (its silo just died and membership has not said so), this copy stops being
    /// refreshed, and every entry would go stale together after <see cref="CloudOptions.LoadEntryTimeToLive"/>;
    /// then every other host would look dead (a volume across hosts opened with five of six members missing). A silo
    /// that is really gone leaves the table once the grain is placed again.
    /// </summary>
    private DateTimeOffset Cutoff()
    {
        var now = time.GetUtcNow();
        var updated = _snapshot.UpdatedUtc;
        return (updated != DateTimeOffset.MinValue && updated < now ? updated : now) - _options.LoadEntryTimeToLive;
    }

    /// <summary>The fresh entry of a silo (by address or name), or null when it has not published lately.</summary>
    public SiloLoad? Find(string silo)
    {
        var cutoff = Cutoff();
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

    /// <summary>Adds <paramref name="units"/> (default one) to a silo's score until the next refresh.</summary>
    public void Debit(string siloAddress, double units = 1)
    {
        Snapshot current, next;
        do
        {
            current = _snapshot;
            next = current with
            {
                PlacementDebits = current.PlacementDebits.SetItem(
                    siloAddress, current.PlacementDebits.GetValueOrDefault(siloAddress) + units)
            };
        }
        while (Interlocked.CompareExchange(ref _snapshot, next, current) != current);
    }

    /// <summary>Mean effective score over fresh, non-draining entries.</summary>
    public double MeanScore()
    {
        var cutoff = Cutoff();
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
    /// The fresh, non-draining silo of <paramref name="candidates"/> with the lowest effective score, other than
    /// <paramref name="except"/>; ties go to the earlier candidate, so that sorted candidates give one answer on
    /// every silo. Null when no candidate has a fresh entry.
    /// </summary>
    public string? LeastLoaded(IEnumerable<string> candidates, string? except = null)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        string? best = null;
        var bestScore = double.MaxValue;
        foreach (var silo in candidates)
        {
            if (silo == except || Find(silo) is not { Draining: false } entry) continue;
            var score = EffectiveScore(entry);
            if (score < bestScore) (best, bestScore) = (silo, score);
        }
        return best;
    }

    /// <summary>
    /// True when moving the silo's delegated work elsewhere would help: its score is above
    /// <see cref="CloudOptions.OverloadMinimumScore"/> plus <see cref="CloudOptions.OverloadFactor"/> times what the
    /// least-loaded other silo would score with that work added. The work that moves with the units (queued copies and
    /// pending MiB) counts on both sides, so a silo does not look overloaded merely because a volume's units all live
    /// there (volume affinity puts them together): against the mean, the one busy silo of a cluster always looked
    /// overloaded and its units went round the silos. What stays is what the silo itself adds: disk latency and CPU.
    /// A silo is overloaded too when its scheduling delay (<see cref="SiloLoad.SchedulingDelayMs"/>) is above
    /// <see cref="StarvedSchedulingDelay"/> plus the factor times the least-loaded other silo's: a processor capped or
    /// starved, which its CPU percent does not show; and when its write-time floor (<see cref="SiloLoad.DiskFloorMs"/>)
    /// is above <see cref="SlowDiskFloor"/> plus the factor times that silo's: a slow disk, which its average write
    /// time cannot tell from a long queue. With no other silo (of <paramref name="requiredHost"/>, when
    /// given) moving cannot help, so it is false.
    /// </summary>
    public bool IsOverloaded(SiloLoad entry, string? requiredHost = null)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var cutoff = Cutoff();
        var bestOther = double.MaxValue;
        SiloLoad? other = null;
        foreach (var e in _snapshot.Entries)
        {
            if (e.SiloAddress == entry.SiloAddress || e.PublishedUtc < cutoff || e.Draining) continue;
            if (requiredHost is not null && e.HostName != requiredHost) continue;
            var score = EffectiveScore(e);
            if (score < bestOther) (bestOther, other) = (score, e);
        }
        if (other is null) return false;
        var movable = entry.QueueDepth + entry.PendingDelegatedBytes / (1024.0 * 1024.0);
        if (EffectiveScore(entry) > _options.OverloadMinimumScore + _options.OverloadFactor * (bestOther + movable))
            return true;
        // A starved processor stays with the silo when its units leave, and slows every step of their work; the
        // queue that its slowness built up does not make moving pointless (the rule above would say so), because
        // the queue drains faster where the work goes.
        if (entry.SchedulingDelayMs
            > StarvedSchedulingDelay.TotalMilliseconds + _options.OverloadFactor * other.SchedulingDelayMs)
            return true;
        // Likewise a slow disk: its floor (the lowest small write time lately) stays when the queue leaves.
        return entry.DiskFloorMs > SlowDiskFloor.TotalMilliseconds + _options.OverloadFactor * other.DiskFloorMs;
    }

    /// <summary>
    /// The write-time floor (<see cref="SiloLoad.DiskFloorMs"/>) beyond <see cref="CloudOptions.OverloadFactor"/> times
    /// the least-loaded other silo's that makes a silo overloaded: several times the 1-3 ms of a durable small write
    /// through the members' disk services, well under a slow disk's 20 ms or more.
    /// </summary>
    public static readonly TimeSpan SlowDiskFloor = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// The scheduling delay beyond <see cref="CloudOptions.OverloadFactor"/> times the least-loaded other silo's that
    /// makes a silo overloaded: a fifth of a default CFS quota period (100 ms). A silo held to a quarter of a core is
    /// throttled for most of each period while it works, and its work waits 25-40 ms on average; silos sharing an
    /// ordinary busy machine wait alike, so the factor keeps them apart.
    /// </summary>
    public static readonly TimeSpan StarvedSchedulingDelay = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// Whether the last synchronization target is still appropriate: alive (published lately), eligible (of
    /// <paramref name="requiredHost"/> when the volume's members are that host's files), not draining, not overloaded
    /// (<see cref="IsOverloaded"/>). The reason names the first failed test, or "sticky".
    /// </summary>
    public bool IsAppropriateTarget(string silo, string? requiredHost, out string reason)
    {
        var entry = Find(silo);
        if (entry is null) { reason = "target-gone"; return false; }
        if (requiredHost is not null && entry.HostName != requiredHost) { reason = "target-ineligible"; return false; }
        if (entry.Draining) { reason = "target-draining"; return false; }
        if (IsOverloaded(entry, requiredHost)) { reason = "target-overloaded"; return false; }
        reason = "sticky";
        return true;
    }
}
