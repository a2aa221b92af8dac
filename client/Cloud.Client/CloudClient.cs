using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using Cloud.Grains.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Hosting;

namespace Cloud.Client;

/// <summary>
/// The Cloud SDK: volumes' control plane and a data-plane handle per volume, over an Orleans cluster client. Writes
/// and reads go to the front end of the gateway silo, which delegates them (see docs/ARCHITECTURE.md).
/// </summary>
/// <remarks>
/// A question (list, show, rebuild progress, cluster status, open) that meets a silo just lost is asked again for up
/// to <see cref="CloudVolume.SiloLossRetryBound"/>, as the volume handle's reads and writes are: an operator looks at
/// the cluster exactly when a host has died. A change (create, delete, fail, replace, rebuild, scrub) is not, since one
/// whose answer was lost may have been made; its failure reaches the program.
/// </remarks>
public sealed partial class CloudClient : IAsyncDisposable
{
    /// <summary>The gateway a silo started with no arguments listens on.</summary>
    public const string DefaultGateway = "127.0.0.1:30000";

    private readonly IHost? _host;

    /// <summary>
    /// Wraps a cluster client that is already connected (in a silo, a test cluster, or your own host).
    /// </summary>
    public CloudClient(IClusterClient client) => Cluster = client;

    private CloudClient(IHost host)
    {
        _host = host;
        Cluster = host.Services.GetRequiredService<IClusterClient>();
    }

    /// <summary>
    /// How long connecting may take before it fails (a gateway or clustering database that does not answer).
    /// </summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(15);

    /// <summary>The underlying Orleans client.</summary>
    public IClusterClient Cluster { get; }

    /// <summary>Connects to a silo's gateway (<c>HOST:PORT</c>) in plaintext.</summary>
    public static Task<CloudClient> ConnectAsync(
        string gateway = DefaultGateway,
        string clusterId = "cloud",
        string serviceId = "cloud",
        CancellationToken cancellationToken = default)
        => ConnectAsync(gateway, clusterId, serviceId, tls: null, cancellationToken);

    /// <summary>
    /// Connects to a silo's gateway (<c>HOST:PORT</c>), over mutual TLS when <paramref name="tls"/> is given: the client
    /// presents its certificate and accepts only a gateway whose certificate chains to the cluster's authority.
    /// </summary>
    /// <param name="gateway">The gateway, <c>HOST:PORT</c>.</param>
    /// <param name="clusterId">The cluster id the silos were started with.</param>
    /// <param name="serviceId">The service id the silos were started with.</param>
    /// <param name="tls">The client's certificate and the cluster authority, or null for plaintext.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <exception cref="CloudRequestException">The gateway is not HOST:PORT, or no gateway answered (a refused TLS
    /// handshake looks the same from here: the gateway drops the connection).</exception>
    public static async Task<CloudClient> ConnectAsync(
        string gateway,
        string clusterId,
        string serviceId,
        ClusterCertificates? tls,
        CancellationToken cancellationToken = default)
    {
        var endpoint = await ResolveAsync(gateway, cancellationToken).ConfigureAwait(false);
        var builder = Host.CreateApplicationBuilder(
            new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(endpoint);
            if (tls is not null) client.UseTls(o => tls.Configure(o, ClusterPeer.Silo));
            // A caller's Activity.Current reaches the silos, so that its request and the silos' spans form one trace.
            client.AddActivityPropagation();
            client.Configure<Orleans.Configuration.ClusterOptions>(
                o => { o.ClusterId = clusterId; o.ServiceId = serviceId; });
            client.Configure<Orleans.Configuration.GatewayOptions>(
                o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(30));
        });
        return await StartAsync(
            builder, $"cannot connect to a Cloud silo at {gateway}", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Builds and starts the client host; a failure to connect becomes one <see cref="CloudRequestException"/> starting
    /// with <paramref name="failure"/>.
    /// </summary>
    private static async Task<CloudClient> StartAsync(
        HostApplicationBuilder builder,
        string failure,
        CancellationToken cancellationToken)
    {
        var host = builder.Build();
        // The Orleans client keeps retrying a gateway that does not answer; a command line must not hang on it.
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(ConnectTimeout);
        try
        {
            await host.StartAsync(bounded.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            host.Dispose();
            throw new CloudRequestException(
                $"{failure}: no answer within {ConnectTimeout.TotalSeconds:0} s; is a silo running there?", ex);
        }
        catch (Exception ex)
        {
            host.Dispose();
            throw new CloudRequestException($"{failure}: {ex.Message}", ex);
        }
        return new CloudClient(host);
    }

    /// <summary>Parses <c>HOST:PORT</c> and resolves the host.</summary>
    public static async Task<IPEndPoint> ResolveAsync(string gateway, CancellationToken cancellationToken = default)
    {
        var colon = gateway.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(gateway.AsSpan(colon + 1), out var port) || port is < 1 or > 65535)
            throw new CloudRequestException(
                $"gateway '{gateway}' is not HOST:PORT with a port of 1-65535 (e.g. {DefaultGateway})");
        var host = gateway[..colon].Trim('[', ']');
        if (IPAddress.TryParse(host, out var address)) return new IPEndPoint(address, port);
        var addresses = await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork)
            ?? addresses.FirstOrDefault()
            ?? throw new CloudRequestException($"gateway host '{host}' does not resolve");
        return new IPEndPoint(chosen, port);
    }

    private IVolumeCatalogGrain Catalog => Cluster.GetGrain<IVolumeCatalogGrain>(0);

    /// <summary>Creates a volume.</summary>
    public Task<VolumeInfo> CreateVolumeAsync(VolumeSpec spec) => Catalog.CreateAsync(spec);

    /// <summary>Every volume.</summary>
    public Task<ImmutableArray<VolumeInfo>> ListVolumesAsync() => SiloLoss.RetryAsync(() => Catalog.ListAsync());

    /// <summary>Health, members and rebuild progress of a volume.</summary>
    public Task<VolumeStatus> ShowVolumeAsync(string name) =>
        SiloLoss.RetryAsync(() => Cluster.GetGrain<IVolumeGrain>(name).ShowAsync());

    /// <summary>Deletes a volume and its disks.</summary>
    public Task DeleteVolumeAsync(string name) => Catalog.DeleteAsync(name);

    /// <summary>Fails a member disk.</summary>
    public Task<VolumeStatus> FailDiskAsync(string name, int index, string reason = "failed by operator") =>
        Cluster.GetGrain<IVolumeGrain>(name).FailDiskAsync(index, reason);

    /// <summary>Replaces a failed member with a fresh disk.</summary>
    public Task<VolumeStatus> ReplaceDiskAsync(string name, int index)
        => Cluster.GetGrain<IVolumeGrain>(name).ReplaceDiskAsync(index);

    /// <summary>
    /// Replaces a failed member with the disk <paramref name="disk"/> names (<c>file:PATH</c> or
    /// <c>pageblob:CONTAINER/BLOB</c>; null = a new disk of the member's kind).
    /// </summary>
    public Task<VolumeStatus> ReplaceDiskAsync(string name, int index, string? disk)
        => Cluster.GetGrain<IVolumeGrain>(name).ReplaceDiskWithAsync(index, disk);

    /// <summary>
    /// Replaces a failed member of a volume spread over the hosts' disk pools with a new file in a pool of
    /// <paramref name="host"/>; refused when that host holds another member of the volume or has no pool.
    /// </summary>
    public Task<VolumeStatus> ReplaceDiskOnHostAsync(string name, int index, string host)
        => Cluster.GetGrain<IVolumeGrain>(name).ReplaceDiskOnHostAsync(index, host);

    /// <summary>Starts a rebuild.</summary>
    public Task<RebuildStatus> StartRebuildAsync(string name)
        => Cluster.GetGrain<IVolumeGrain>(name).StartRebuildAsync();

    /// <summary>The running or last rebuild.</summary>
    public Task<RebuildStatus?> GetRebuildAsync(string name) =>
        SiloLoss.RetryAsync(() => Cluster.GetGrain<IVolumeGrain>(name).GetRebuildAsync());

    /// <summary>Scrubs a volume.</summary>
    public Task<ScrubResult> ScrubAsync(string name, bool repair)
        => Cluster.GetGrain<IVolumeGrain>(name).ScrubAsync(repair);

    /// <summary>Every silo's live load and delegation counts.</summary>
    public Task<ClusterStatus> GetClusterStatusAsync() =>
        SiloLoss.RetryAsync(() => Cluster.GetGrain<ILoadTableGrain>(0).GetStatusAsync());

    /// <summary>Opens a data-plane handle on a volume.</summary>
    public async Task<CloudVolume> OpenVolumeAsync(string name)
    {
        var info = await SiloLoss.RetryAsync(() => Catalog.GetAsync(name)).ConfigureAwait(false)
            ?? throw new CloudRequestException(
                $"volume '{name}' does not exist; 'cloudctl volume list' shows the volumes");
        return new CloudVolume(Cluster, info);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_host is null) return;
        try { await _host.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (Exception) { /* the gateway may be gone already; nothing to flush on the client */ }
        _host.Dispose();
    }
}
