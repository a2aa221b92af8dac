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
internal sealed class DelegationGrain(
    ILocalSiloDetails silo,
    WriteScheduler worker,
    Hosting.SiloRuntimeSettings settings,
    TimeProvider time)
    : Grain, IDelegationGrain
{
    private readonly MoveRefusal _moving = new(time);

    /// <summary>
    /// Hands the copy to this silo's RAID worker in process: the worker grain lives on this same silo, so a grain
    /// call to it would only add a message and a scheduler turn to every delegated write.
    /// </summary>
    public Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write)
    {
        // Calls that reach this activation while it is moving must not land here: the caller sends again, and the next
        // activation is placed by load. Past the bound the unit stayed (placement chose this silo), and takes copies.
        if (_moving.IsRefusing) throw new DelegationMovedException(silo.Name);
        return EngineErrors.Guard(() => worker.AcceptAsync(write));
    }

    public async Task RelocateAsync()
    {
        // A first server found this silo wanting: the volume's home leaves it, so that placement chooses another for
        // this unit and for the volume's other units as their first servers find the same. A home that must stay its
        // minimum time keeps the unit, which then takes the copy as a unit that stayed.
        if (!await LeaveHomeAsync()) return;
        // Migration runs placement again (load-based, on this silo) and moves the activation with the directory
        // entry in one step, so no message can re-create the unit here meanwhile, as a plain deactivation allows.
        _moving.Requested();
        this.MigrateOnIdle();
    }

    /// <summary>Tells the volume's home grain to leave this silo; true unless the home must stay.</summary>
    private async Task<bool> LeaveHomeAsync()
    {
        var key = this.GetPrimaryKeyString();
        var slash = key.IndexOf('/');
        if (slash <= 0) return true;
        try
        {
            return await GrainFactory.GetGrain<IVolumeHomeGrain>(key[..slash])
                .LeaveAsync(silo.SiloAddress.ToParsableString(), force: settings.Draining)
                .WaitAsync(LoadBasedPlacementDirector.HomeCallMax);
        }
        catch (Exception ex) when (ex is TimeoutException or OrleansException || Hosting.SiloFailures.IsSiloFailure(ex))
        {
            // Placement then keeps the home only if its own table still shows this silo eligible.
            return true;
        }
    }

    public Task<string> GetSiloAsync() => Task.FromResult(silo.Name);
}

/// <summary>
/// How long a unit told to move refuses copies: from the request for at most <see cref="Max"/>. A migration that happens
/// ends the activation well within it; one whose placement chose the unit's own silo again never happens (Orleans keeps
/// the activation), and without the bound the unit would refuse every copy until it is collected, each first server
/// retrying for seconds and then giving the write up. Across processes, where each silo's load table lags its own way,
/// that made load-based delegation 50 times slower than a fixed target (docs/BENCHMARKS.md, "Delegation across
/// processes").
/// </summary>
internal sealed class MoveRefusal(TimeProvider time)
{
    /// <summary>Longest refusal after one request to move.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromSeconds(1);

    private long _requestedTimestamp = long.MinValue;

    /// <summary>True while copies must go elsewhere (the caller sends again).</summary>
    public bool IsRefusing =>
        _requestedTimestamp != long.MinValue && time.GetElapsedTime(_requestedTimestamp) < Max;

    /// <summary>Records a request to move, now.</summary>
    public void Requested() => _requestedTimestamp = time.GetTimestamp();
}
