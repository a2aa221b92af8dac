// Cloud's local cluster: PostgreSQL (container, or the local binaries when there is no container
// runtime), the schema applied before any silo starts, three silos on ADO.NET clustering, Azurite
// for page-blob disks, and the Aspire dashboard with the silos' logs, metrics and traces.
//
//   dotnet run --project Aspire.AppHost
//
// Configuration (appsettings.json, environment Cloud__..., or --Cloud:Key=value):
//   Cloud:PostgresMode  auto | executable | container   (auto: container when docker or podman is on PATH)
//   Cloud:PostgresBin   directory with initdb and postgres (default: newest /usr/lib/postgresql/*/bin)
//   Cloud:SiloCount     number of silos, 1..16 (default 3)
//   Cloud:DataDirectory where PostgreSQL, Azurite and the silos keep data (default: a folder under the temp directory)

using System.Net;
using System.Net.Sockets;
using Cloud.AppHost;
using Cloud.Hosting.Postgres;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

const int MaxSiloCount = 16;
const string ClusterId = "cloud-local";
const string DatabaseName = "cloud";
const string ConnectionName = "cloud-postgres";

var builder = DistributedApplication.CreateBuilder(args);
var config = builder.Configuration;

var siloCount = config.GetValue("Cloud:SiloCount", 3);
if (siloCount < 1 || siloCount > MaxSiloCount)
{
    throw new ArgumentOutOfRangeException(
        "Cloud:SiloCount", siloCount, $"Cloud:SiloCount must be between 1 and {MaxSiloCount}.");
}

var mode = (config["Cloud:PostgresMode"] ?? "auto").ToLowerInvariant();
if (mode is not ("auto" or "executable" or "container"))
{
    throw new ArgumentException($"Cloud:PostgresMode='{mode}' is not allowed; use auto, executable or container.");
}

var useContainer = mode == "container" || (mode == "auto" && ContainerRuntimeWorks());
var dataRoot = config["Cloud:DataDirectory"]
    ?? Path.Combine(Path.GetTempPath(), "cloud-apphost", builder.Environment.ApplicationName);
Directory.CreateDirectory(dataRoot);

// Ports are chosen now, free on 127.0.0.1, so several AppHosts (and tests) can run side by side.
var postgresPort = FreePort();
var serverConnectionString = new NpgsqlConnectionStringBuilder
{
    Host = "127.0.0.1",
    Port = postgresPort,
    Username = LocalPostgres.SuperUser,
    Database = DatabaseName,
}.ConnectionString;

IResourceBuilder<IResource> postgres;
if (useContainer)
{
    postgres = builder.AddContainer("postgres", "postgres", "16")
        .WithEnvironment("POSTGRES_HOST_AUTH_METHOD", "trust")
        .WithEnvironment("POSTGRES_DB", DatabaseName)
        .WithEndpoint(port: postgresPort, targetPort: 5432, name: "tcp", scheme: "tcp", isProxied: false);
}
else
{
    var bin = LocalPostgres.FindBinDirectory(config["Cloud:PostgresBin"]);
    var dataDirectory = Path.Combine(dataRoot, "postgres", "data");
    LocalPostgres.EnsureInitialized(bin, dataDirectory);
    var (command, prefix) = LocalPostgres.AsPostgresUser(Path.Combine(bin, "postgres"));
    postgres = builder.AddExecutable("postgres", command, Path.GetDirectoryName(dataDirectory)!,
        [
            .. prefix,
            "-D", dataDirectory,
            "-h", "127.0.0.1",
            "-p", postgresPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            // The socket goes next to the data: /var/run/postgresql may not exist or belong to a system server.
            "-k", Path.GetDirectoryName(dataDirectory)!,
        ]);
}

// Healthy once the server accepts connections, the database exists and the schema is applied:
// silos wait for it, so none starts against a missing OrleansQuery table.
builder.Services.AddHealthChecks().AddAsyncCheck("postgres-schema", async cancellationToken =>
{
    try
    {
        await EnsureDatabaseAsync(serverConnectionString, cancellationToken);
        await PostgresSchema.ApplyAsync(serverConnectionString, cancellationToken);
        return HealthCheckResult.Healthy();
    }
    catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException
                                   or System.Net.Sockets.SocketException)
    {
        return HealthCheckResult.Unhealthy($"PostgreSQL on 127.0.0.1:{postgresPort} is not ready: {e.Message}");
    }
});
postgres = postgres.WithHealthCheck("postgres-schema");

var connectionString = builder.AddConnectionString(
    ConnectionName, ReferenceExpression.Create($"{serverConnectionString}"));

// Azurite for page-blob disks, from the npm packages test.sh installs (node_modules/.bin/azurite).
var repoRoot = Path.GetFullPath(Path.Combine(builder.AppHostDirectory, ".."));
var azuriteBin = Path.Combine(repoRoot, "node_modules", ".bin", "azurite-blob");
var azuritePort = FreePort();
IResourceBuilder<ExecutableResource>? azurite = null;
if (File.Exists(azuriteBin))
{
    var azuriteData = Path.Combine(dataRoot, "azurite");
    Directory.CreateDirectory(azuriteData);
    azurite = builder.AddExecutable("azurite", azuriteBin, repoRoot,
        "--blobHost", "127.0.0.1",
        "--blobPort", azuritePort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        "--location", azuriteData,
        "--skipApiVersionCheck",
        "--loose");
}
else
{
    Console.Error.WriteLine(
        $"Cloud AppHost: {azuriteBin} not found; run 'npm ci' (or ./test.sh) for Azurite. Starting without page-blob disks.");
}

// Azurite's well-known development account; it is public and only valid against Azurite.
var azuriteConnectionString =
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
    $"BlobEndpoint=http://127.0.0.1:{azuritePort}/devstoreaccount1;";

// Per silo: silo, gateway, NBD and dashboard ports, all free, so that the silos on this one machine do not all
// claim the NBD default 10809 or the Development dashboard default 8080.
const int PortsPerSilo = 4;
var ports = FreePorts(siloCount * PortsPerSilo);
for (var i = 0; i < siloCount; i++)
{
    int siloPort = ports[PortsPerSilo * i], gatewayPort = ports[(PortsPerSilo * i) + 1];
    int nbdPort = ports[(PortsPerSilo * i) + 2], dashboardPort = ports[(PortsPerSilo * i) + 3];
    var silo = builder.AddProject<Projects.Cloud_Silo>($"silo-{i}")
        .WithReference(connectionString)
        .WaitFor(postgres)
        .WithEnvironment("Orleans__ClusterId", ClusterId)
        .WithEnvironment("Orleans__ServiceId", ClusterId)
        .WithEnvironment("Orleans__Endpoints__AdvertisedIPAddress", "127.0.0.1")
        .WithEnvironment(
            "Orleans__Endpoints__SiloPort", siloPort.ToString(System.Globalization.CultureInfo.InvariantCulture))
        .WithEnvironment(
            "Orleans__Endpoints__GatewayPort", gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture))
        .WithEnvironment("Nbd__Port", nbdPort.ToString(System.Globalization.CultureInfo.InvariantCulture))
        .WithEnvironment(
            "Http__DashboardPort", dashboardPort.ToString(System.Globalization.CultureInfo.InvariantCulture))
        // Orleans' configuration-based ADO.NET clustering. Aspire's Orleans integration would set
        // Orleans__Clustering__ServiceKey, but Orleans 10.4.2 reads ConnectionName, so we set it here.
        .WithEnvironment("Orleans__Clustering__ProviderType", "AdoNet")
        .WithEnvironment("Orleans__Clustering__Invariant", PostgresSchema.Invariant)
        .WithEnvironment("Orleans__Clustering__ConnectionName", ConnectionName)
        // Cloud's own switches (issue 4): --clustering postgres --connection CONNSTRING as configuration.
        .WithEnvironment("Cloud__Clustering", "postgres")
        .WithEnvironment("Cloud__Connection", serverConnectionString)
        // One data directory for all silos: they share the file-backed member disks, the catalog and the clocks.
        .WithEnvironment("Cloud__DataDirectory", Path.Combine(dataRoot, "silos"))
        // A stable, distinct name per replica: each silo's RAID worker is keyed by it.
        .WithEnvironment("Silo__Name", "silo-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture))
        .WithEnvironment("Cloud__Azure__ConnectionString", azuriteConnectionString);
    if (azurite is not null)
    {
        silo.WaitFor(azurite);
    }
}

builder.Build().Run();

// A docker or podman binary alone is not enough (here docker is installed but has no daemon):
// the runtime must answer "info" within a few seconds.
static bool ContainerRuntimeWorks()
{
    var probeTimeout = TimeSpan.FromSeconds(10);
    foreach (var runtime in (string[])["docker", "podman"])
    {
        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, runtime)));
        if (!onPath)
        {
            continue;
        }

        var info = new System.Diagnostics.ProcessStartInfo(runtime, "info")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = System.Diagnostics.Process.Start(info);
        if (process is null)
        {
            continue;
        }

        process.StandardOutput.ReadToEndAsync();
        process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(probeTimeout))
        {
            process.Kill(entireProcessTree: true);
            continue;
        }

        if (process.ExitCode == 0)
        {
            return true;
        }
    }

    return false;
}

static int FreePort() => FreePorts(1)[0];

static int[] FreePorts(int count)
{
    // Held open together so the ports differ; released before the resources bind them.
    var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
    try
    {
        listeners.ForEach(l => l.Start());
        return listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
    }
    finally
    {
        listeners.ForEach(l => l.Stop());
    }
}

static async Task EnsureDatabaseAsync(string connectionString, CancellationToken cancellationToken)
{
    var target = new NpgsqlConnectionStringBuilder(connectionString);
    var admin = new NpgsqlConnectionStringBuilder(connectionString) { Database = "postgres", Pooling = false };
    await using var connection = new NpgsqlConnection(admin.ConnectionString);
    await connection.OpenAsync(cancellationToken);
    await using var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", connection);
    exists.Parameters.AddWithValue("name", target.Database!);
    if (await exists.ExecuteScalarAsync(cancellationToken) is null)
    {
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{target.Database}\"", connection);
        await create.ExecuteNonQueryAsync(cancellationToken);
    }
}
