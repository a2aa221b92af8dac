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
/// context, so the key is the one thing every placement of the unit has). Among those the lowest score wins; ties go to
/// the lowest address so that the choice is deterministic. With
/// no fresh load data (a cluster just starting), the local silo is chosen, which keeps the write on the first server;
/// a unit that must live on a host with no live silo is refused with <see cref="CloudStorageException"/>.
/// </summary>
internal sealed class LoadBasedPlacementDirector(
    LoadTable table,
    Hosting.SiloRuntimeSettings settings,
    IClusterMembershipService membership,
    Volumes.VolumeDirectory directory)
    : IPlacementDirector
{
    public async Task<SiloAddress> OnAddActivation(
        PlacementStrategy strategy,
        PlacementTarget target,
        IPlacementContext context)
    {
        var candidates = context.GetCompatibleSilos(target);
        if (await RequiredHostAsync(target.GrainIdentity).ConfigureAwait(false) is { } requiredHost)
            candidates = OnHost(candidates, requiredHost, target);
        return Choose(candidates, context);
    }

    /// <summary>The host a unit must live on: its volume's, when the volume's members are one host's files.</summary>
    private async Task<string?> RequiredHostAsync(GrainId unit)
    {
        var key = unit.Key.ToString();
        var slash = key?.IndexOf('/') ?? -1;
        if (slash <= 0 || !Guid.TryParseExact(key.AsSpan(0, slash), "N", out var volumeId)) return null;
        return await directory.FindAsync(volumeId).ConfigureAwait(false) is { } volume
            ? Volumes.VolumeReach.RequiredHost(volume)
            : null;
    }

    private SiloAddress Choose(SiloAddress[] candidates, IPlacementContext context)
    {
        if (settings.FixedDelegationTarget is { } fixedName)
        {
            var members = membership.CurrentSnapshot.Members;
            foreach (var silo in candidates)
                if (members.TryGetValue(silo, out var m) && m.Name == fixedName) return silo;
        }
        SiloAddress? best = null;
        var bestScore = double.MaxValue;
        foreach (var silo in candidates.OrderBy(s => s.ToParsableString(), StringComparer.Ordinal))
        {
            var entry = table.Find(silo.ToParsableString());
            if (entry is null || entry.Draining) continue;
            var score = table.EffectiveScore(entry);
            if (score < bestScore)
            {
                best = silo;
                bestScore = score;
            }
        }
        best ??= candidates.Contains(context.LocalSilo)
            ? context.LocalSilo
            : candidates.OrderBy(s => s.ToParsableString(), StringComparer.Ordinal).First();
        return Placed(best);
    }

    /// <summary>
    /// The candidates of <paramref name="host"/> by the load table. With no fresh load data at all (a cluster just
    /// starting) every candidate stays: the host of a silo is known only once it published.
    /// </summary>
    private SiloAddress[] OnHost(SiloAddress[] candidates, string host, PlacementTarget target)
    {
        var eligible = candidates.Where(s => table.Find(s.ToParsableString()) is { Draining: false } e && e.HostName == host).ToArray();
        if (eligible.Length > 0 || !candidates.Any(s => table.Find(s.ToParsableString()) is not null)) return eligible.Length > 0 ? eligible : candidates;
        throw new CloudStorageException(
            $"no live silo of host '{host}' to place {target.GrainIdentity} on: the volume's members are files on that host; start a silo there");
    }

    private SiloAddress Placed(SiloAddress silo)
    {
        table.Debit(silo.ToParsableString());
        CloudMetrics.Placements.Add(1, new KeyValuePair<string, object?>("silo", silo.ToString()));
        return silo;
    }
}
