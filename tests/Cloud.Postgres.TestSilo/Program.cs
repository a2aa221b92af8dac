using System.Globalization;
using System.Net;
using Cloud.Clustering.Postgres;
using Cloud.Hosting.Postgres;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;

namespace Cloud.Postgres.TestSilo;

/// <summary>
/// Entry point: <c>Cloud.Postgres.TestSilo --connection CS --cluster ID --silo-port N --gateway-port N
/// [--apply-schema]</c>.
/// </summary>
public static class TestSiloProgram
{
    /// <summary>The grain storage name the counter grain uses.</summary>
    public const string StorageName = "cloud";

    /// <summary>Runs the silo until SIGTERM, SIGINT or SIGKILL.</summary>
    public static async Task<int> Main(string[] args)
    {
        string? connection = null, cluster = null;
        int siloPort = 0, gatewayPort = 0;
        var applySchema = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--connection": connection = args[++i]; break;
                case "--cluster": cluster = args[++i]; break;
                case "--silo-port": siloPort = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--gateway-port": gatewayPort = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--apply-schema": applySchema = true; break;
                default:
                    Console.Error.WriteLine(
                        $"Unknown argument '{args[i]}'. Allowed: --connection, --cluster, --silo-port, --gateway-port, --apply-schema.");
                    return 2;
            }
        }

        if (connection is null || cluster is null || siloPort <= 0 || gatewayPort <= 0)
        {
            Console.Error.WriteLine("--connection, --cluster, --silo-port and --gateway-port are all required.");
            return 2;
        }

        if (applySchema)
        {
            await PostgresSchema.ApplyAsync(connection);
        }

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = cluster;
                o.ServiceId = cluster;
            });
            silo.ConfigureEndpoints(IPAddress.Loopback, siloPort, gatewayPort, listenOnAnyHostAddress: false);
            silo.UseCloudPostgresClustering(connection);
            silo.AddCloudPostgresGrainStorage(StorageName, connection);
            silo.UseCloudFastFailureDetection();
        });

        using var host = builder.Build();
        await host.StartAsync();
        // The tests wait for this line rather than polling, so a silo that fails to start is reported at once.
        Console.WriteLine($"SILO-READY {siloPort}");
        await host.WaitForShutdownAsync();
        return 0;
    }
}
