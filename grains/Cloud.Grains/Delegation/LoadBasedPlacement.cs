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
/// Eligible = compatible with the grain, published lately, not draining. Among those the lowest score wins; ties go
/// to the lowest address so that the choice is deterministic. With no fresh load data (a cluster just starting),
/// the local silo is chosen, which keeps the write on the first server.
/// </summary>
internal sealed class LoadBasedPlacementDirector(LoadTable table, Hosting.SiloRuntimeSettings settings, IClusterMembershipService membership) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var candidates = context.GetCompatibleSilos(target);
        if (settings.FixedDelegationTarget is { } fixedName)
        {
            var members = membership.CurrentSnapshot.Members;
            foreach (var silo in candidates)
                if (members.TryGetValue(silo, out var m) && m.Name == fixedName) return Task.FromResult(silo);
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
        best ??= candidates.Contains(context.LocalSilo) ? context.LocalSilo : candidates.OrderBy(s => s.ToParsableString(), StringComparer.Ordinal).First();
        table.Debit(best.ToParsableString());
        CloudMetrics.Placements.Add(1, new KeyValuePair<string, object?>("silo", best.ToString()));
        return Task.FromResult(best);
    }
}
