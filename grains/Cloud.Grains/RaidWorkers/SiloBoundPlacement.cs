using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;

namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// Places a grain on the silo whose stable name equals the grain's string key (one RAID worker per silo).
/// </summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("cloud.SiloBoundPlacement")]
public sealed class SiloBoundPlacement : PlacementStrategy
{
    /// <summary>The one instance.</summary>
    public static readonly SiloBoundPlacement Instance = new();

    /// <summary>
    /// False: the key names the grain's silo, so placement alone finds the one activation, and the grain directory
    /// would only add harm. When a silo dies, Orleans deactivates every registered activation whose directory entry
    /// the dead silo kept, also on the survivors; a RAID worker deactivating there queues every call to it (a
    /// reactivated lock grain's reclaim among them) behind its running commit polls and flushes.
    /// </summary>
    public override bool IsUsingGrainDirectory => false;
}

/// <summary>Marks a grain class for <see cref="SiloBoundPlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SiloBoundPlacementAttribute() : PlacementAttribute(SiloBoundPlacement.Instance);

/// <summary>No active silo carries the name a silo-bound grain is keyed by.</summary>
public sealed class SiloNotFoundException(string siloName, IEnumerable<string> activeNames)
    : OrleansException($"no active silo is named '{siloName}'; active silos: {string.Join(", ", activeNames)}");

/// <summary>Chooses the compatible silo whose name is the grain key.</summary>
internal sealed class SiloBoundPlacementDirector(IClusterMembershipService membership) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(
        PlacementStrategy strategy,
        PlacementTarget target,
        IPlacementContext context)
    {
        var wanted = target.GrainIdentity.Key.ToString();
        var compatible = context.GetCompatibleSilos(target);
        var snapshot = membership.CurrentSnapshot;
        foreach (var silo in compatible)
        {
            if (snapshot.Members.TryGetValue(silo, out var member)
                && member.Status == SiloStatus.Active
                && member.Name == wanted)
                return Task.FromResult(silo);
        }
        // A silo that is still joining may not be Active in the snapshot yet, but it is placing its own worker.
        if (context.LocalSilo is { } local && snapshot.Members.TryGetValue(local, out var self) && self.Name == wanted)
            return Task.FromResult(local);
        throw new SiloNotFoundException(
            wanted,
            snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.Name)
                .Order(StringComparer.Ordinal));
    }
}
