using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.FirstServers;
using Cloud.Nbd;
using Cloud.Storage.Volumes;
using Microsoft.Extensions.Options;

namespace Cloud.Silo.Nbd;

/// <summary>
/// Serves every volume in the catalog as an NBD export of the same name, through this silo's first server (in process),
/// to the clients the catalog's NBD grants allow (<see cref="NbdAccessList"/>: a volume without grants is open to all).
/// A catalog call that finds the catalog grain's silo just dead is asked again until the grain is placed anew (within
/// <see cref="CloudOptions.RedelegationTimeout"/>, or until the connection gives up), so a client connecting while the
/// cluster declares a silo dead is not refused.
/// </summary>
internal sealed class CloudNbdExportResolver(
    IGrainFactory grains,
    FirstServerService firstServer,
    IOptions<CloudOptions> cloud,
    IOptions<NbdServerOptions> nbd) : INbdExportResolver
{
    private Task<T> AskCatalogAsync<T>(Func<IVolumeCatalogGrain, Task<T>> call, CancellationToken ct) =>
        SiloFailures.RetryAsync(() => call(grains.GetGrain<IVolumeCatalogGrain>(0)), cloud.Value.RedelegationTimeout)
            .WaitAsync(ct);

    public async ValueTask<IBlockVolume?> OpenAsync(string exportName, CancellationToken ct)
    {
        // The empty name reaches us only when the server could not resolve it (it asks ListAsync first), and a
        // volume cannot be named "": nothing to open.
        if (exportName.Length == 0) return null;
        var info = await AskCatalogAsync(c => c.GetAsync(exportName), ct).ConfigureAwait(false);
        if (info is null) return null;
        // The first server refuses requests above MaxRequestBytes; the NBD server splits anything larger than this.
        var maxIoSizeBytes = Math.Min(cloud.Value.MaxRequestBytes, nbd.Value.MaxPayloadBytes);
        return new FirstServerVolume(firstServer, info, maxIoSizeBytes);
    }

    public async ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct)
    {
        var volumes = await AskCatalogAsync(c => c.ListAsync(), ct).ConfigureAwait(false);
        return [.. volumes.Select(v => v.Name)];
    }

    /// <remarks>Read from the catalog at each open, so a revoke applies to the next connection.</remarks>
    public async ValueTask<NbdAccess> GetAccessAsync(string exportName, string? clientIdentity, CancellationToken ct)
        => (await AccessListAsync(ct).ConfigureAwait(false)).AccessOf(exportName, clientIdentity);

    public async ValueTask<IReadOnlyList<string>> ListAsync(string? clientIdentity, CancellationToken ct)
    {
        var access = await AccessListAsync(ct).ConfigureAwait(false);
        return access.Visible(await ListAsync(ct).ConfigureAwait(false), clientIdentity);
    }

    private async Task<NbdAccessList> AccessListAsync(CancellationToken ct)
    {
        var grants = await AskCatalogAsync(c => c.ListNbdGrantsAsync(), ct).ConfigureAwait(false);
        return grants.IsEmpty
            ? NbdAccessList.Open
            : new NbdAccessList(grants.Select(g => new NbdGrantEntry(g.Identity, g.Volume, g.ReadOnly)));
    }
}
