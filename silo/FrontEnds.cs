using Cloud.Nbd;
using Cloud.Silo.Nbd;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cloud.Silo;

/// <summary>The silo's front ends besides the Orleans gateway: the NBD server.</summary>
public static class FrontEnds
{
    /// <summary>The configuration section of the NBD server (<see cref="NbdServerOptions"/>).</summary>
    public const string NbdSectionName = "Nbd";

    /// <summary>
    /// Serves every volume over NBD (section <c>Nbd</c>: <c>--nbd-address</c>, <c>--nbd-port</c> with 0 = off,
    /// <c>--nbd-socket</c>; on by default at 127.0.0.1:10809). Call it after <c>UseOrleans</c>, so that the server
    /// starts accepting only once the silo runs, and stops before the silo does.
    /// </summary>
    public static IHostApplicationBuilder AddCloudFrontEnds(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddSingleton<INbdExportResolver, CloudNbdExportResolver>();
        // The NBD library's own options and validator (named fields, allowed ranges), bound from configuration.
        builder.Services.AddNbdServer();
        builder.Services.AddOptions<NbdServerOptions>().BindConfiguration(NbdSectionName);
        builder.Services.AddHostedService<FrontEndAnnouncer>();
        return builder;
    }
}

/// <summary>Prints where the NBD server listens once it does, for operators and for scripts that wait for it.</summary>
internal sealed class FrontEndAnnouncer(NbdServer nbd) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var where = new List<string>();
        if (nbd.TcpEndPoint is { } tcp) where.Add($"nbd://{tcp}");
        if (nbd.UnixSocketPath is { } path) where.Add($"nbd+unix:///?socket={path}");
        Console.WriteLine(where.Count == 0 ? "NBD off (--nbd-port 0 and no --nbd-socket)." : $"NBD serving every volume at {string.Join(" and ", where)}");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
