namespace Cloud.Grains.Delegation;

/// <summary>
/// Where a unit's delegated writes live (key: <c>{volumeId:N}/{partition}</c>). Placed by load-based placement on the
/// least-loaded eligible silo, so its activation *is* the active synchronization target: it stays while the silo
/// stays appropriate (stickiness) and is re-placed when asked to move or when its silo dies.
/// </summary>
[Alias("cloud.IDelegationGrain")]
public interface IDelegationGrain : IGrainWithStringKey
{
    /// <summary>Hands the copy to this silo's RAID worker.</summary>
    [Alias("Accept")]
    Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write);

    /// <summary>Deactivates so that the next call places the unit anew.</summary>
    [Alias("Relocate")]
    Task RelocateAsync();

    /// <summary>The silo this activation runs on.</summary>
    [Alias("Where")]
    Task<string> GetSiloAsync();
}
