using Cloud.Grains.Hosting;
using Cloud.Clustering.Postgres;
using Cloud.Hosting.Postgres;
using Cloud.Silo;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Configuration;

// The Cloud silo: `dotnet run --project silo -- [--data DIR] [--name NAME] [--silo-port N] [--gateway-port N]
//                   [--clustering localhost|postgres] [--connection CONNSTRING] [--init-schema]
//                   [--tls off|on] [--tls-cert FILE --tls-key FILE] [--tls-ca FILE]`.
// Options come from appsettings.json, environment variables (e.g. Cloud__DataDirectory, Silo__Name) and the
// command line, in that order of precedence (the command line wins). The environment Aspire and Orleans use
// (Cloud__Clustering, Cloud__Connection, Orleans__Clustering__*, ConnectionStrings__*, Orleans__Endpoints__*,
// Orleans__ClusterId) fills in whatever the Silo section leaves unset: see SiloConfiguration.

var switches = new Dictionary<string, string>(StringComparer.Ordinal)
{
    ["--data"] = "Cloud:DataDirectory",
    ["--name"] = "Silo:Name",
    ["--address"] = "Silo:Address",
    ["--host-name"] = "Cloud:HostName",
    ["--silo-port"] = "Silo:SiloPort",
    ["--gateway-port"] = "Silo:GatewayPort",
    ["--clustering"] = "Silo:Clustering",
    ["--connection"] = "Silo:Connection",
    ["--cluster-id"] = "Silo:ClusterId",
    ["--nbd-address"] = "Nbd:Address",
    ["--nbd-port"] = "Nbd:Port",
    ["--nbd-socket"] = "Nbd:UnixSocketPath",
    ["--nbd-congestion-control"] = "Nbd:CongestionControl",
    ["--nbd-tls"] = "Nbd:Tls",
    ["--nbd-tls-cert"] = "Nbd:TlsCertificatePath",
    ["--nbd-tls-key"] = "Nbd:TlsKeyPath",
    ["--nbd-tls-ca"] = "Nbd:TlsCaPath",
    ["--nbd-tls-psk"] = "Nbd:TlsPskPath",
    ["--http-address"] = "Http:Address",
    ["--http-port"] = "Http:Port",
    ["--dashboard-port"] = "Http:DashboardPort",
    ["--init-schema"] = "Silo:ApplySchema",
    ["--postgres-sign-in"] = "Silo:PostgresSignIn",
    ["--tls"] = "Silo:Tls:Mode",
    ["--tls-cert"] = "Silo:Tls:CertificateFile",
    ["--tls-key"] = "Silo:Tls:KeyFile",
    ["--tls-ca"] = "Silo:Tls:AuthorityFile",
};
// Flags without a value: rewritten to KEY=true before the pairs are checked.
string[] flags = ["--init-schema"];
args = [.. args.Select(a => flags.Contains(a) ? a + "=true" : a)];
// --disk-pool DIR is repeatable, which the switch map is not: each one becomes Cloud:DiskPools:N.
if (!SiloSettings.TakeDiskPools(ref args, out var diskPools, out var poolError))
{
    Console.Error.WriteLine($"cloud-silo: {poolError}");
    return 2;
}

if (args.Contains("--print-settings"))
{
    // Every key and variable the silo reads, for operators and for the deployment contract test.
    foreach (var line in SiloSettings.Describe()) Console.WriteLine(line);
    return 0;
}
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine("usage: Cloud.Silo [--data DIR] [--name NAME] [--address ADDR|auto] [--host-name HOST]");
    Console.WriteLine("                  [--silo-port N] [--gateway-port N]");
    Console.WriteLine(
        "                  [--clustering localhost|postgres] [--connection CONNSTRING] [--init-schema] [--cluster-id ID]");
    Console.WriteLine("                  [--postgres-sign-in password|managedidentity]");
    Console.WriteLine(
        "                  [--nbd-address ADDR] [--nbd-port N] [--nbd-socket PATH] [--nbd-congestion-control NAMES]");
    Console.WriteLine(
        "                  [--nbd-tls off|on|require] [--nbd-tls-cert FILE --nbd-tls-key FILE [--nbd-tls-ca FILE]] [--nbd-tls-psk FILE]");
    Console.WriteLine("                  [--http-address ADDR] [--http-port N] [--dashboard-port N]");
    Console.WriteLine("                  [--disk-pool DIR]...   (repeatable: this host's disk pools)");
    Console.WriteLine("                  [--tls off|on] [--tls-cert FILE --tls-key FILE] [--tls-ca FILE]");
    Console.WriteLine("       TLS (mutual, on the silo and gateway ports) is on by default when --address is not loopback;");
    Console.WriteLine("       certificates are PEM files (or Silo:Tls:StoreThumbprint): see docs/SECURITY.md.");
    Console.WriteLine("       Cloud.Silo --print-settings   (every configuration key and variable the silo reads)");
    return 0;
}
for (var i = 0; i < args.Length; i += 2)
{
    if (!switches.ContainsKey(args[i].Split('=')[0]))
    {
        Console.Error.WriteLine($"cloud-silo: unknown option '{args[i]}'; allowed: {string.Join(", ", switches.Keys)}");
        return 2;
    }
    if (args[i].Contains('=')) i--;
    else if (i + 1 >= args.Length)
    {
        Console.Error.WriteLine($"cloud-silo: option '{args[i]}' needs a value");
        return 2;
    }
}

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
builder.Configuration.AddCommandLine(args, switches);
builder.Configuration.AddInMemoryCollection(diskPools);
// Checked here as well as by the options validator, so that a mistyped pool is one line, before the host logs a trace.
if (Cloud.Grains.Disks.DiskPools.Check(builder.Configuration.GetSection("Cloud:DiskPools").Get<string[]>() ?? [])
        .FirstOrDefault() is { } poolProblem)
{
    Console.Error.WriteLine($"cloud-silo: {poolProblem}");
    return 2;
}
if (SiloConfiguration.AddFallbacks(builder.Configuration) is { } configError)
{
    Console.Error.WriteLine($"cloud-silo: {configError}");
    return 2;
}
if (Cloud.Silo.Nbd.NbdSettings.Check(builder.Configuration) is { } nbdErrors)
{
    // Checked before the host starts, which would log a stack trace before our one line.
    foreach (var error in nbdErrors) Console.Error.WriteLine($"cloud-silo: {error}");
    return 2;
}
// Every log line carries its UTC time: a host's log is laid beside other hosts' logs and a client's failure.
builder.Logging.AddSimpleConsole(o =>
{
    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
    o.UseUtcTimestamp = true;
});
builder.Logging.AddFilter("Orleans", LogLevel.Warning);
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.Logging.AddFilter("Polly", LogLevel.Warning);

builder.Services.AddOptions<SiloHostOptions>().BindConfiguration(SiloHostOptions.SectionName).ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<SiloHostOptions>, SiloHostOptionsValidator>();

// Orleans needs the ports before the host runs, so read them here; the validator reports bad values at start.
var silo = new SiloHostOptions();
try
{
    builder.Configuration.GetSection(SiloHostOptions.SectionName).Bind(silo);
}
catch (InvalidOperationException ex)
{
    Console.Error.WriteLine($"cloud-silo: {ex.InnerException?.Message ?? ex.Message}");
    return 2;
}
// A Cloud:* value that is not of its setting's type (Cloud:PartialParityLog=maybe) stops the silo with one line naming
// the setting and the type it takes, not with the host's start failure and a stack trace.
try
{
    builder.Configuration.GetSection(CloudOptions.SectionName).Bind(new CloudOptions());
}
catch (InvalidOperationException ex)
{
    Console.Error.WriteLine($"cloud-silo: {ex.Message}");
    return 2;
}
var siloErrors = new SiloHostOptionsValidator().Validate(null, silo);
if (siloErrors.Failed)
{
    foreach (var failure in siloErrors.Failures) Console.Error.WriteLine($"cloud-silo: {failure}");
    return 2;
}

// The host address: what the silo binds and advertises, and where NBD and HTTP listen unless told otherwise.
var address = HostAddress.Resolve(silo.Address, Environment.GetEnvironmentVariable, out var addressError);
if (address is null)
{
    Console.Error.WriteLine($"cloud-silo: {addressError}");
    return 2;
}
if (silo.Clustering == ClusteringKind.Localhost && !address.Equals(System.Net.IPAddress.Loopback))
{
    Console.Error.WriteLine(
        $"cloud-silo: --address {silo.Address} needs --clustering postgres; localhost clustering runs on 127.0.0.1 only (--nbd-address and --http-address serve NBD and HTTP elsewhere)");
    return 2;
}
// Mutual TLS on the Orleans ports: on by default off loopback, and a silo that should speak it but has no usable
// certificate does not start (it would otherwise be a plaintext door into the cluster, or fail every handshake).
using var tls = SiloTls.Load(silo.Tls, address, out var tlsError);
if (tlsError is not null)
{
    Console.Error.WriteLine($"cloud-silo: {tlsError}");
    return 2;
}
if (tls is null && !HostAddress.IsLoopback(address))
{
    Console.Error.WriteLine(
        $"cloud-silo: warning: --tls off on {address}: the silo and gateway ports are plaintext, and anyone who reaches them can join the cluster and call any grain");
}
var endpointDefaults = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
foreach (var key in (string[])["Nbd:Address", "Http:Address"])
{
    if (string.IsNullOrEmpty(builder.Configuration[key])) endpointDefaults[key] = address.ToString();
}
builder.Configuration.AddInMemoryCollection(endpointDefaults);
if (StartChecks.PortInUse(address, [("--silo-port", silo.SiloPort), ("--gateway-port", silo.GatewayPort)])
    is { } portError)
{
    Console.Error.WriteLine($"cloud-silo: {portError}");
    return 2;
}

// The drain must end before the host gives up on stopping.
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = silo.DrainTimeout + SiloConfiguration.ShutdownMargin);

// One Entra credential for the host (managed identity in Azure): PostgreSQL sign-in and page blobs take tokens from
// it.
var credential = SiloCredential.Create(Environment.GetEnvironmentVariable);
builder.Services.AddSingleton(credential);

// One data source for the schema, the start checks, clustering and grain storage, so that all sign in alike.
await using var database = CreateDataSource(silo, credential, out var dataSourceError);
if (dataSourceError is not null)
{
    Console.Error.WriteLine($"cloud-silo: {dataSourceError}");
    return 2;
}

if (database is not null && silo.ApplySchema)
{
    try
    {
        await PostgresSchema.ApplyAsync(database);
        Console.WriteLine("Cloud schema applied to the clustering database.");
    }
    catch (Exception ex)
        when (ex is Npgsql.NpgsqlException or ArgumentException or InvalidOperationException or TimeoutException
            or System.Net.Sockets.SocketException)
    {
        var reason = PostgresSignInException.Find(ex)?.Message ?? ex.Message;
        Console.Error.WriteLine($"cloud-silo: applying the schema failed: {reason.ReplaceLineEndings(" ")}");
        return 1;
    }
}

if (database is not null && await StartChecks.DatabaseProblemAsync(database) is { } databaseError)
{
    Console.Error.WriteLine($"cloud-silo: {databaseError}");
    return 2;
}

builder.UseOrleans(orleans =>
{
    if (silo.Clustering == ClusteringKind.Postgres)
    {
        // The host's own address, bound and advertised: other hosts' silos and clients dial it from the membership
        // table.
        orleans.ConfigureEndpoints(address, silo.SiloPort, silo.GatewayPort, listenOnAnyHostAddress: false);
        orleans.Configure<ClusterOptions>(o => { o.ClusterId = silo.ClusterId; o.ServiceId = silo.ServiceId; });
        orleans.UseCloudPostgresClustering(database!);
        // Registered before AddCloud, so the catalog, writer slots and partition clocks live in PostgreSQL and not
        // in the data directory's file-backed storage, which AddCloud adds only when this name is free.
        orleans.AddCloudPostgresGrainStorage(CloudGrainStorage.Name, database!);
        if (silo.FastFailureDetection) orleans.UseCloudFastFailureDetection();
    }
    else
    {
        orleans.UseLocalhostClustering(
            silo.SiloPort, silo.GatewayPort, serviceId: silo.ServiceId, clusterId: silo.ClusterId);
    }
    if (tls is not null) orleans.UseCloudTls(tls);
    orleans.Configure<Orleans.Configuration.SiloOptions>(o => o.SiloName = silo.Name);
    orleans.AddCloud();
    orleans.AddCloudGracefulDrain(silo.DrainTimeout);
});
builder.AddCloudEndpoints();

using var host = builder.Build();
try
{
    await host.StartAsync();
}
catch (OptionsValidationException ex)
{
    foreach (var failure in ex.Failures) Console.Error.WriteLine($"cloud-silo: {failure}");
    return 2;
}
catch (Exception ex) when (StateImportException.Find(ex) is { } refused)
{
    // The data directory's old state files would overwrite the stored cluster state: one line saying what to do.
    Console.Error.WriteLine($"cloud-silo: {refused.Message}");
    return 2;
}
catch (IOException ex)
{
    // A listener that cannot bind (e.g. the NBD port is taken): one line, not a stack trace.
    Console.Error.WriteLine($"cloud-silo: {ex.Message}");
    return 2;
}
var cloud = host.Services.GetRequiredService<IOptions<CloudOptions>>().Value;
Console.WriteLine(
    $"Cloud silo '{silo.Name}' up: gateway {address}:{silo.GatewayPort}, silo port {silo.SiloPort}, advertised address {address}, cluster '{silo.ClusterId}' on {(silo.Clustering == ClusteringKind.Postgres ? "postgres" : "localhost")} clustering, {(tls is null ? "plaintext" : "mutual TLS")}, data {Path.GetFullPath(cloud.DataDirectory)}. Ctrl+C stops it.");
await host.WaitForShutdownAsync();
var drain = host.Services.GetRequiredService<GracefulDrain>();
Console.WriteLine(drain.LeftOver == 0
    ? $"Cloud silo '{silo.Name}' stopped after draining its writes."
    : $"Cloud silo '{silo.Name}' stopped with {drain.LeftOver} writes left to re-delegation.");
return 0;

// The clustering database's data source (null without postgres clustering), or null and one error line.
static Npgsql.NpgsqlDataSource? CreateDataSource(
    SiloHostOptions silo,
    Azure.Core.TokenCredential credential,
    out string? error)
{
    error = null;
    if (silo.Clustering != ClusteringKind.Postgres) return null;
    var token = silo.PostgresSignIn == PostgresSignIn.ManagedIdentity
        ? new EntraTokenPassword(credential, SiloCredential.Describe(Environment.GetEnvironmentVariable))
        : null;
    try
    {
        return CloudPostgresDataSource.Create(silo.Connection!, token);
    }
    catch (ArgumentException ex)
    {
        error = $"--connection: {ex.Message.Split(" (Parameter", 2)[0]}";
        return null;
    }
}
