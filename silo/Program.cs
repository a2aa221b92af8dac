using Cloud.Grains.Hosting;
using Cloud.Silo;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Configuration;

// The Cloud silo: `dotnet run --project silo -- [--data DIR] [--name NAME] [--silo-port N] [--gateway-port N]`.
// Options come from appsettings.json, environment variables (e.g. Cloud__DataDirectory, Silo__Name) and the
// command line, in that order of precedence (the command line wins).

var switches = new Dictionary<string, string>(StringComparer.Ordinal)
{
    ["--data"] = "Cloud:DataDirectory",
    ["--name"] = "Silo:Name",
    ["--silo-port"] = "Silo:SiloPort",
    ["--gateway-port"] = "Silo:GatewayPort",
    ["--clustering"] = "Silo:Clustering",
    ["--connection"] = "Silo:Connection",
    ["--cluster-id"] = "Silo:ClusterId",
    ["--nbd-address"] = "Nbd:Address",
    ["--nbd-port"] = "Nbd:Port",
    ["--nbd-socket"] = "Nbd:UnixSocketPath",
    ["--http-address"] = "Http:Address",
    ["--http-port"] = "Http:Port",
    ["--dashboard-port"] = "Http:DashboardPort",
};

if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine("usage: Cloud.Silo [--data DIR] [--name NAME] [--silo-port N] [--gateway-port N]");
    Console.WriteLine("                  [--clustering localhost] [--nbd-address ADDR] [--nbd-port N] [--nbd-socket PATH]");
    Console.WriteLine("                  [--http-address ADDR] [--http-port N] [--dashboard-port N]");
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
builder.Logging.AddFilter("Orleans", LogLevel.Warning);
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.Logging.AddFilter("Polly", LogLevel.Warning);

builder.Services.AddOptions<SiloHostOptions>().BindConfiguration(SiloHostOptions.SectionName).ValidateOnStart();
builder.Services.AddSingleton<IValidateOptions<SiloHostOptions>, SiloHostOptionsValidator>();
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));

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
var siloErrors = new SiloHostOptionsValidator().Validate(null, silo);
if (siloErrors.Failed)
{
    foreach (var failure in siloErrors.Failures) Console.Error.WriteLine($"cloud-silo: {failure}");
    return 2;
}

builder.UseOrleans(orleans =>
{
    orleans.UseLocalhostClustering(silo.SiloPort, silo.GatewayPort, serviceId: silo.ServiceId, clusterId: silo.ClusterId);
    orleans.Configure<Orleans.Configuration.SiloOptions>(o => o.SiloName = silo.Name);
    orleans.AddCloud();
});
builder.AddCloudFrontEnds();

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
catch (IOException ex)
{
    // A listener that cannot bind (e.g. the NBD port is taken): one line, not a stack trace.
    Console.Error.WriteLine($"cloud-silo: {ex.Message}");
    return 2;
}
var cloud = host.Services.GetRequiredService<IOptions<CloudOptions>>().Value;
Console.WriteLine($"Cloud silo '{silo.Name}' up: gateway 127.0.0.1:{silo.GatewayPort}, silo port {silo.SiloPort}, data {Path.GetFullPath(cloud.DataDirectory)}. Ctrl+C stops it.");
await host.WaitForShutdownAsync();
return 0;
