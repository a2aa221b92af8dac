using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Placement;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Cloud.Grains.Workers;

/// <summary>
/// A unit's delegated work. Load-based placement puts the activation on the least-loaded eligible silo; while it
/// lives there it is the unit's synchronization target (stickiness), and <see cref="RelocateAsync"/> or the silo's
/// death lets placement choose again.
/// </summary>
[LoadBasedPlacement, Reentrant]
internal sealed class DelegationGrain(ILocalSiloDetails silo, RaidWorkerService worker) : Grain, IDelegationGrain
{
    /// <summary>
    /// Hands the copy to this silo's RAID worker in process: the worker grain lives on this same silo, so a grain
    /// call to it would only add a message and a scheduler turn to every delegated write.
    /// </summary>
    public Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write) => EngineErrors.Guard(() => worker.AcceptAsync(write));

    public Task RelocateAsync()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public Task<string> GetSiloAsync() => Task.FromResult(silo.Name);
}
