using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Nbd;

/// <summary>Registers the NBD server in a host.</summary>
public static class NbdServiceCollectionExtensions
{
    /// <summary>
    /// Adds the NBD server as a hosted service: it starts with the host and stops with it. The host must also
    /// register an <see cref="INbdExportResolver"/>. Options are validated when the host starts, with messages
    /// naming each bad field.
    /// </summary>
    public static IServiceCollection AddNbdServer(
        this IServiceCollection services,
        Action<NbdServerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<NbdServerOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        options.ValidateOnStart();
        services.TryAddEnumerable(
            ServiceDescriptor.Singleton<IValidateOptions<NbdServerOptions>, NbdServerOptionsValidator>());
        services.TryAddSingleton<NbdServer>();
        services.AddHostedService<NbdHostedService>();
        return services;
    }
}

/// <summary>Runs the <see cref="NbdServer"/> for the lifetime of the host.</summary>
internal sealed class NbdHostedService(NbdServer server) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => server.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => server.StopAsync(cancellationToken);
}
