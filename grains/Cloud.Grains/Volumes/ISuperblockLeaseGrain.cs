namespace Cloud.Grains.Volumes;

/// <summary>
/// The cluster-wide lock on one volume's superblocks (key: the volume id): the engine of every silo takes it
/// before it rewrites the member table (fail, replace, rebuild checkpoint), so two silos never write the same
/// superblock generation with different member tables. A grant is a lease: it ends on release, or when it is
/// not renewed in time (its holder silo died).
/// </summary>
[Alias("cloud.ISuperblockLeaseGrain")]
public interface ISuperblockLeaseGrain : IGrainWithGuidKey
{
    /// <summary>
    /// Grants the lease to <paramref name="holderSilo"/> for <paramref name="lease"/>, waiting at most
    /// <paramref name="maxWait"/> for the current holder; returns the grant's token, or 0 when it is still held
    /// (the caller asks again).
    /// </summary>
    [Alias("Acquire")]
    Task<long> AcquireAsync(string holderSilo, TimeSpan lease, TimeSpan maxWait);

    /// <summary>
    /// Extends a grant; false when <paramref name="token"/> no longer holds the lease (it expired and was taken).
    /// </summary>
    [Alias("Renew")]
    Task<bool> RenewAsync(long token, TimeSpan lease);

    /// <summary>Ends a grant; a stale token is ignored.</summary>
    [Alias("Release")]
    Task ReleaseAsync(long token);
}
