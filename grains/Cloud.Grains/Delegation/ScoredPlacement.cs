using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace Cloud.Grains.Delegation;

/// <summary>
/// Places a grain on the compatible silo of lowest score in the load table (<see cref="LoadTable.LeastLoaded"/>): the
/// partition-lock grains, which every write of their partition calls two or three times from whichever silo it came
/// through. Orleans' default (resource-optimized placement) weighs CPU use and memory, and a silo held to a fraction of
/// a core shows low CPU use, so it drew grains that every other silo's writes then waited on behind its throttled
/// scheduler; the load table's score counts that wait (<see cref="Abstractions.SiloLoad.SchedulingDelayMs"/>).
/// </summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("cloud.ScoredPlacement")]
public sealed class ScoredPlacement : PlacementStrategy
{
    /// <summary>The one instance.</summary>
    public static readonly ScoredPlacement Instance = new();
}

/// <summary>Marks a grain class for <see cref="ScoredPlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class ScoredPlacementAttribute() : PlacementAttribute(ScoredPlacement.Instance);

/// <summary>
/// The least-loaded compatible silo by the load table (ties: lowest address), debited by <see cref="ActivationDebit"/>
/// until the next refresh so that a burst of activations spreads; with no fresh load data (a cluster just starting),
/// the local silo when compatible, else a random compatible one, as Orleans' own placements fall back.
/// </summary>
internal sealed class ScoredPlacementDirector(LoadTable table) : IPlacementDirector
{
    /// <summary>
    /// Score units debited per activation: a quarter of a delegation unit's, because a lock grain's work is a few
    /// calls per write where a unit's is the write itself; a volume's sixteen lock grains placed at once then spread
    /// over the idle silos without reaching one whose score is four units higher.
    /// </summary>
    public const double ActivationDebit = 0.25;

    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var candidates = context.GetCompatibleSilos(target)
            .Select(s => (Silo: s, Address: s.ToParsableString()))
            .OrderBy(c => c.Address, StringComparer.Ordinal).ToArray();
        if (candidates.Length == 0)
            throw new OrleansException($"no compatible silo to place {target.GrainIdentity} on");
        var best = table.LeastLoaded(candidates.Select(c => c.Address));
        if (best is null)
        {
            return Task.FromResult(candidates.Any(c => c.Silo.Equals(context.LocalSilo))
                ? context.LocalSilo
                : candidates[Random.Shared.Next(candidates.Length)].Silo);
        }
        table.Debit(best, ActivationDebit);
        return Task.FromResult(candidates.First(c => c.Address == best).Silo);
    }
}
