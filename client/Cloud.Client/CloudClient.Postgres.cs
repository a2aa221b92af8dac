using Cloud.Grains.Abstractions;
using Cloud.Clustering.Postgres;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Hosting;

namespace Cloud.Client;

public sealed partial class CloudClient
{
    /// <summary>
    /// How often the client re-reads the gateway list from the membership table, so a dead gateway is dropped quickly.
    /// </summary>
    public static readonly TimeSpan PostgresGatewayRefreshPeriod = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Connects to a cluster that uses PostgreSQL clustering: the gateways come from the membership table, and when the
    /// gateway in use dies the client moves to another one (calls in flight on it fail and may be retried).
    /// </summary>
    /// <param name="connectionString">The clustering database (an Npgsql connection string).</param>
    /// <param name="clusterId">The cluster id the silos were started with.</param>
    /// <param name="serviceId">The service id the silos were started with.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <exception cref="CloudRequestException">The connection string is not valid or no gateway answered.</exception>
    public static Task<CloudClient> ConnectPostgresAsync(
        string connectionString,
        string clusterId = "cloud",
        string serviceId = "cloud",
        CancellationToken cancellationToken = default)
        => ConnectPostgresAsync(connectionString, clusterId, serviceId, tls: null, cancellationToken);

    /// <summary>
    /// As <see cref="ConnectPostgresAsync(string, string, string, CancellationToken)"/>, over mutual TLS to every
    /// gateway when <paramref name="tls"/> is given.
    /// </summary>
    /// <param name="connectionString">The clustering database (an Npgsql connection string).</param>
    /// <param name="clusterId">The cluster id the silos were started with.</param>
    /// <param name="serviceId">The service id the silos were started with.</param>
    /// <param name="tls">The client's certificate and the cluster authority, or null for plaintext.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <exception cref="CloudRequestException">The connection string is not valid or no gateway answered.</exception>
    public static async Task<CloudClient> ConnectPostgresAsync(
        string connectionString,
        string clusterId,
        string serviceId,
        ClusterCertificates? tls,
        CancellationToken cancellationToken = default)
    {
        var builder = Host.CreateApplicationBuilder(
            new HostApplicationBuilderSettings { Args = [], DisableDefaults = true });
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        try
        {
            builder.UseOrleansClient(client =>
            {
                client.UseCloudPostgresClustering(connectionString);
                if (tls is not null) client.UseTls(o => tls.Configure(o, ClusterPeer.Silo));
                client.AddActivityPropagation();
                client.Configure<Orleans.Configuration.ClusterOptions>(
                    o => { o.ClusterId = clusterId; o.ServiceId = serviceId; });
                client.Configure<Orleans.Configuration.GatewayOptions>(
                    o => o.GatewayListRefreshPeriod = PostgresGatewayRefreshPeriod);
            });
        }
        catch (ArgumentException ex)
        {
            throw new CloudRequestException(
                $"--connection is not a usable PostgreSQL connection string: {ex.Message}", ex);
        }
        return await StartAsync(
            builder,
            $"cannot connect to Cloud cluster '{clusterId}' through PostgreSQL clustering",
            cancellationToken).ConfigureAwait(false);
    }
}
