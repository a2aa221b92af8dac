using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.RaidWorkers;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Cloud.Grains.Delegation;

/// <summary>
/// A unit's delegated work. Load-based placement puts the activation on the least-loaded eligible silo; while it
/// lives there it is the unit's synchronization target (stickiness), and <see cref="RelocateAsync"/> or the silo's
/// death lets placement choose again.
/// </summary>
[LoadBasedPlacement, Reentrant]
internal sealed class DelegationGrain(ILocalSiloDetails silo, WriteScheduler worker) : Grain, IDelegationGrain
{
    private bool _moving;

    /// <summary>
    /// Hands the copy to this silo's RAID worker in process: the worker grain lives on this same silo, so a grain
    /// call to it would only add a message and a scheduler turn to every delegated write.
    /// </summary>
    public Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write)
    {
        // Calls that reach this activation after it was told to move must not land here: the caller sends again,
        // and the next activation is placed by load.
        if (_moving) throw new DelegationMovedException(silo.Name);
        return EngineErrors.Guard(() => worker.AcceptAsync(write));
    }

    public Task RelocateAsync()
    {
        // Migration runs placement again (load-based, on this silo) and moves the activation with the directory
        // entry in one step, so no message can re-create the unit here meanwhile, as a plain deactivation allows.
        _moving = true;
        this.MigrateOnIdle();
        return Task.CompletedTask;
    }

    public Task<string> GetSiloAsync() => Task.FromResult(silo.Name);
}
