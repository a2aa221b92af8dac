using Cloud.Storage.Volumes;

namespace Cloud.Nbd;

/// <summary>
/// Maps NBD export names to volumes. The host (the silo) implements it; the NBD server calls it during the
/// handshake of each connection.
/// </summary>
/// <remarks>
/// The server advertises <c>NBD_FLAG_CAN_MULTI_CONN</c> (unless <see cref="NbdServerOptions.AdvertiseMultiConnection"/>
/// is off), which promises clients that a flush on one connection covers writes acknowledged on every other
/// connection to the same export. Implementations must therefore hand out volumes for which
/// <see cref="IBlockVolume.FlushAsync"/> makes durable every write acknowledged through <em>any</em> handle of
/// that volume: either the same instance for every connection, or handles that keep no private write-back cache
/// (their acknowledged writes already reached the member devices, whose flush is shared).
/// </remarks>
public interface INbdExportResolver
{
    /// <summary>
    /// Opens the volume named <paramref name="exportName"/> (the NBD export name), or returns null when no such
    /// volume exists. The empty name is passed through as is; the server resolves it to the only volume
    /// when exactly one exists.
    /// </summary>
    ValueTask<IBlockVolume?> OpenAsync(string exportName, CancellationToken ct);

    /// <summary>The names of every volume that can be served, for <c>NBD_OPT_LIST</c>.</summary>
    ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct);

    /// <summary>
    /// Called once for each volume returned by <see cref="OpenAsync"/> when the connection no longer needs it
    /// (after <c>NBD_OPT_INFO</c>, or when the connection ends). The server never disposes volumes itself.
    /// </summary>
    ValueTask ReleaseAsync(IBlockVolume volume) => ValueTask.CompletedTask;

    /// <summary>
    /// What <paramref name="clientIdentity"/> may do with the export <paramref name="exportName"/> (an existing volume's
    /// name): the PSK identity or the client certificate's common name after TLS, null for a client without one.
    /// <see cref="NbdAccess.None"/> makes the export look absent to that client. Default: read-write for everyone.
    /// </summary>
    ValueTask<NbdAccess> GetAccessAsync(string exportName, string? clientIdentity, CancellationToken ct)
        => ValueTask.FromResult(NbdAccess.ReadWrite);

    /// <summary>
    /// The names <c>NBD_OPT_LIST</c> shows <paramref name="clientIdentity"/>: those it may open. Default: every name
    /// <see cref="ListAsync(CancellationToken)"/> gives.
    /// </summary>
    ValueTask<IReadOnlyList<string>> ListAsync(string? clientIdentity, CancellationToken ct) => ListAsync(ct);
}

/// <summary>What one client may do with one export.</summary>
public enum NbdAccess
{
    /// <summary>Nothing: the export is not listed, and opening it fails as for an unknown name.</summary>
    None,

    /// <summary>
    /// Reads: the export advertises NBD_FLAG_READ_ONLY, and writes, trims and write-zeroes fail with EPERM.
    /// </summary>
    ReadOnly,

    /// <summary>Everything.</summary>
    ReadWrite,
}
