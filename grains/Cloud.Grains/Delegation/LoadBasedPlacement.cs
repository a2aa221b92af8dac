using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Orleans.Placement;
using Orleans.Runtime.Placement;
using Orleans.Runtime;

namespace Cloud.Grains.Delegation;

/// <summary>Places delegated work on the least-loaded eligible silo by the published load table.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("cloud.LoadBasedPlacement")]
public sealed class LoadBasedPlacement : PlacementStrategy
{
    /// <summary>The one instance.</summary>
    public static readonly LoadBasedPlacement Instance = new();
}

/// <summary>Marks a grain class for <see cref="LoadBasedPlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class LoadBasedPlacementAttribute() : PlacementAttribute(LoadBasedPlacement.Instance);

/// <summary>
/// Eligible = compatible with the grain, published lately, not draining, and of the volume's host when the volume's
/// members are that host's files (the unit's key names the volume; a re-placement by migration carries no request
/// context, so the key is the one thing every placement of the unit has). Units of one volume go to the volume's home
/// (<see cref="VolumeAffinity"/>), asked of its <see cref="IVolumeHomeGrain"/> so that every silo agrees; a new home is
/// the eligible silo of lowest score (ties: lowest address). With no fresh load data (a cluster just starting), the
/// local silo is chosen, which keeps the write on the first server; a unit that must live on a host with no live
/// silo is refused with <see cref="CloudStorageException"/>.
/// </summary>
internal sealed class LoadBasedPlacementDirector(
    LoadTable table,
    Hosting.SiloRuntimeSettings settings,
    IClusterMembershipService membership,
    Volumes.VolumeDirectory directory,
    IGrainFactory grains,
    TimeProvider time)
    : IPlacementDirector
{
    /// <summary>
    /// Longest wait for the volume's home grain: past it (its silo just died, say) the unit is placed by load alone,
    /// and the volume's units come together again when they next move.
    /// </summary>
    public static readonly TimeSpan HomeCallMax = TimeSpan.FromSeconds(2);

    public async Task<SiloAddress> OnAddActivation(
        PlacementStrategy strategy,
        PlacementTarget target,
        IPlacementContext context)
    {
        var candidates = context.GetCompatibleSilos(target)
            .OrderBy(s => s.ToParsableString(), StringComparer.Ordinal).ToArray();
        var volumeId = VolumeOf(target.GrainIdentity);
        if (volumeId is { } id && await RequiredHostAsync(id).ConfigureAwait(false) is { } requiredHost)
            candidates = OnHost(candidates, requiredHost, target);
        if (FixedTarget(candidates) is { } fixedSilo) return Placed(fixedSilo, debit: true);
        if (volumeId is { } volume && await HomeAsync(volume, candidates).ConfigureAwait(false) is { } home)
            return Placed(home.Silo, debit: home.IsNew);
        var best = table.LeastLoaded(candidates.Select(s => s.ToParsableString()));
        return Placed(best is null ? Fallback(candidates, context) : candidates.First(s => s.ToParsableString() == best), debit: true);
    }

    /// <summary>The volume id in a unit's key (<c>{volumeId:N}/{partition}</c>), or null for another key.</summary>
    private static Guid? VolumeOf(GrainId unit)
    {
        var key = unit.Key.ToString();
        var slash = key?.IndexOf('/') ?? -1;
        return slash > 0 && Guid.TryParseExact(key.AsSpan(0, slash), "N", out var volumeId) ? volumeId : null;
    }

    /// <summary>The host a unit must live on: its volume's, when the volume's members are one host's files.</summary>
    private async Task<string?> RequiredHostAsync(Guid volumeId) =>
        await directory.FindAsync(volumeId).ConfigureAwait(false) is { } volume
            ? Volumes.VolumeReach.RequiredHost(volume)
            : null;

    private SiloAddress? FixedTarget(SiloAddress[] candidates)
    {
        if (settings.FixedDelegationTarget is not { } fixedName) return null;
        var members = membership.CurrentSnapshot.Members;
        return candidates.FirstOrDefault(s => members.TryGetValue(s, out var m) && m.Name == fixedName);
    }

    /// <summary>
    /// The volume's home among <paramref name="candidates"/>, claimed in its home grain when chosen anew; null when
    /// the grain does not answer in time or no candidate has fresh load data (then the unit is placed by load alone).
    /// </summary>
    private async Task<(SiloAddress Silo, bool IsNew)?> HomeAsync(Guid volumeId, SiloAddress[] candidates)
    {
        var homes = grains.GetGrain<IVolumeHomeGrain>(volumeId.ToString("N"));
        var addresses = candidates.Select(s => s.ToParsableString()).ToArray();
        try
        {
            var home = await homes.GetAsync().WaitAsync(HomeCallMax).ConfigureAwait(false);
            var choice = VolumeAffinity.Choose(addresses, table, home, time.GetUtcNow());
            if (choice is null) return null;
            if (choice == home.Silo) return (candidates[Array.IndexOf(addresses, choice)], false);
            // Another silo may have chosen meanwhile: its choice wins if it is still a candidate here.
            var claimed = await homes.ClaimAsync(home.Silo, choice).WaitAsync(HomeCallMax).ConfigureAwait(false);
            var index = Array.IndexOf(addresses, claimed.Silo);
            return index >= 0 && table.Find(addresses[index]) is { Draining: false }
                ? (candidates[index], claimed.Silo == choice)
                : (candidates[Array.IndexOf(addresses, choice)], true);
        }
        catch (Exception ex) when (ex is TimeoutException or OrleansException || Hosting.SiloFailures.IsSiloFailure(ex))
        {
            return null;
        }
    }

    private static SiloAddress Fallback(SiloAddress[] candidates, IPlacementContext context) =>
        candidates.Contains(context.LocalSilo) ? context.LocalSilo : candidates[0];

    /// <summary>
    /// The candidates of <paramref name="host"/> by the load table. With no fresh load data at all (a cluster just
    /// starting) every candidate stays: the host of a silo is known only once it published.
    /// </summary>
    private SiloAddress[] OnHost(SiloAddress[] candidates, string host, PlacementTarget target)
    {
        var eligible = candidates.Where(s => table.Find(s.ToParsableString()) is { Draining: false } e && e.HostName == host).ToArray();
        // None fresh: the table may have just lost entries (its grain placed again after its silo died; CI saw a write
        // refused so). A silo the membership has as active and that was last seen on the host, not draining, serves.
        if (eligible.Length == 0)
        {
            eligible = candidates
                .Where(s => table.LastKnown(s.ToParsableString()) is { Draining: false } e && e.HostName == host)
                .ToArray();
        }
        if (eligible.Length > 0 || !candidates.Any(s => table.Find(s.ToParsableString()) is not null)) return eligible.Length > 0 ? eligible : candidates;
        throw new CloudStorageException(
            $"no live silo of host '{host}' to place {target.GrainIdentity} on: the volume's members are files on that host; start a silo there");
    }

    /// <summary>
    /// Counts the placement; <paramref name="debit"/> adds one unit to the silo's score until the next refresh, so a
    /// burst of placements spreads. A unit joining its volume's home is not debited: the units of a volume are meant
    /// to pile onto one silo, and a debit per unit would make the home look overloaded to this silo's first server.
    /// </summary>
    private SiloAddress Placed(SiloAddress silo, bool debit)
    {
        if (debit) table.Debit(silo.ToParsableString());
        CloudMetrics.Placements.Add(1, new KeyValuePair<string, object?>("silo", silo.ToString()));
        return silo;
    }
}

/// <summary>
/// Volume affinity: a volume's delegation units live together on one silo, its home, and move together. Spread over
/// several silos, their engines contend for the volume's stripes and members' disk services, while one silo batches
/// and merges every copy (docs/BENCHMARKS.md, "Delegation across processes"); so the units pay for a move only to
/// avoid a slow silo. A first server that finds the home no longer appropriate (<see cref="LoadTable.IsAppropriateTarget"/>)
/// relocates its unit, whose activation tells the home grain to leave that silo; the next placement then chooses a new
/// home, and every other unit follows as its first server finds the old home wanting too.
/// </summary>
internal static class VolumeAffinity
{
    /// <summary>
    /// How long a silo the volume just left is not chosen again as its home while another is eligible: its load table
    /// entry lags the leaving by a publish period or more, and without this the lagging score could send the volume
    /// straight back (each time refusing copies for <see cref="MoveRefusal.Max"/>).
    /// </summary>
    public static readonly TimeSpan AvoidLeftFor = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The home for a unit: the current one while it is a candidate with a fresh entry that is not draining (its load
    /// is the first servers' to judge, and they make it leave); else the least-loaded candidate, other than the silo
    /// left less than <see cref="AvoidLeftFor"/> ago unless it is the only one. Null when no candidate has a fresh
    /// entry. <paramref name="candidates"/> are silo addresses, sorted, so that ties go alike on every silo.
    /// </summary>
    public static string? Choose(IReadOnlyList<string> candidates, LoadTable table, VolumeHome home, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(home);
        if (home.Silo is { } current && candidates.Contains(current) && table.Find(current) is { Draining: false })
            return current;
        var avoid = home.Left is not null && now - home.LeftUtc < AvoidLeftFor ? home.Left : null;
        return table.LeastLoaded(candidates, avoid) ?? table.LeastLoaded(candidates);
    }
}
