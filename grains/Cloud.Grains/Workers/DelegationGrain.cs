using Cloud.Grains.Abstractions;
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
internal sealed class DelegationGrain(ILocalSiloDetails silo) : Grain, IDelegationGrain
{
    public Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write) =>
        GrainFactory.GetGrain<IRaidWorkerGrain>(silo.Name).AcceptAsync(write);

    public Task RelocateAsync()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public Task<string> GetSiloAsync() => Task.FromResult(silo.Name);
}
