using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Cloud.Nbd;
using Cloud.ServiceDefaults;
using Cloud.Silo.Nbd;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Dashboard;

namespace Cloud.Silo;

/// <summary>
/// Everything the silo offers besides the Orleans gateway: the NBD server, telemetry (ServiceDefaults), the health
/// endpoints and the Orleans Dashboard.
/// </summary>
public static class SiloEndpoints
{
    /// <summary>The configuration section of the NBD server (<see cref="NbdServerOptions"/>).</summary>
    public const string NbdSectionName = "Nbd";

    /// <summary>
    /// Adds the endpoints. Call it after <c>UseOrleans</c>, so that the NBD server starts accepting only once the
    /// silo runs, and stops before the silo does.
    /// <list type="bullet">
    /// <item>NBD (section <c>Nbd</c>: <c>--nbd-address</c>, <c>--nbd-port</c> with 0 = off, <c>--nbd-socket</c>; on by
    /// default at 127.0.0.1:10809): every volume, through this silo's first server (FirstServerService, in
    /// process).</item>
    /// <item><c>AddServiceDefaults()</c>: OpenTelemetry with the Orleans meter and the "Cloud" meter, exported over
    /// OTLP
    /// when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set.</item>
    /// <item>HTTP (section <c>Http</c>, <see cref="HttpEndpointOptions"/>): <c>/health</c> and <c>/alive</c> on
    /// <c>--http-port</c>, the Orleans Dashboard on <c>--dashboard-port</c>.</item>
    /// </list>
    /// </summary>
    public static WebApplicationBuilder AddCloudEndpoints(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddSingleton<INbdExportResolver, CloudNbdExportResolver>();
        // The NBD library's own options and validator (named fields, allowed ranges), bound from configuration.
        builder.Services.AddNbdServer();
        builder.Services.AddOptions<NbdServerOptions>().BindConfiguration(NbdSectionName);

        builder.AddServiceDefaults();
        builder.Services.AddHealthChecks().AddCheck<SiloHealthCheck>("silo");

        builder.Services.AddOptions<HttpEndpointOptions>().BindConfiguration(HttpEndpointOptions.SectionName)
            .ValidateOnStart();
        var isDevelopment = builder.Environment.IsDevelopment();
        builder.Services.AddSingleton<IValidateOptions<HttpEndpointOptions>>(
            new HttpEndpointOptionsValidator(isDevelopment));
        // Kestrel needs its listeners before the host is built; bad values are reported by the validator at start.
        var http = new HttpEndpointOptions();
        builder.Configuration.GetSection(HttpEndpointOptions.SectionName).Bind(http);
        var valid = new HttpEndpointOptionsValidator(isDevelopment).Validate(null, http).Succeeded;
        var dashboardPort = valid
            ? http.EffectiveDashboardPort(builder.Environment.IsDevelopment())
            : HttpEndpointOptions.Off;
        var healthPort = valid ? http.Port : HttpEndpointOptions.Off;
        if (dashboardPort != HttpEndpointOptions.Off)
        {
            // UseOrleans reuses the silo builder Program.cs configured.
            builder.UseOrleans(silo => silo.AddDashboard());
        }
        if (healthPort == HttpEndpointOptions.Off && dashboardPort == HttpEndpointOptions.Off)
        {
            // No HTTP at all: without this, Kestrel would listen on its default localhost:5000.
            builder.Services.AddSingleton<IServer, NoHttpServer>();
        }
        else
        {
            var address = IPAddress.Parse(http.Address);
            // Validated above: the files load, so this cannot fail here.
            var certificate = dashboardPort != HttpEndpointOptions.Off && http.DashboardSecured
                ? X509Certificate2.CreateFromPemFile(http.CertificateFile!, http.KeyFile!)
                : null;
            var credentials = certificate is null
                ? null
                : new DashboardCredentials(http.DashboardUser!, DashboardPassword.Read(http.DashboardPasswordFile!));
            builder.WebHost.UseKestrel(kestrel =>
            {
                if (healthPort != HttpEndpointOptions.Off)
                    kestrel.Listen(address, healthPort, l => { if (healthPort == dashboardPort && certificate is not null) l.UseHttps(certificate); });
                if (dashboardPort != HttpEndpointOptions.Off && dashboardPort != healthPort)
                    kestrel.Listen(http.DashboardAddress(), dashboardPort, l => { if (certificate is not null) l.UseHttps(certificate); });
            });
            // Mapped from a startup filter so that Program.cs stays one call (it is shared with other work on the
            // host).
            builder.Services.AddSingleton<IStartupFilter>(
                new EndpointsStartupFilter(healthPort, dashboardPort, credentials));
        }
        builder.Services.AddHostedService<EndpointAnnouncer>();
        return builder;
    }

    private sealed class EndpointsStartupFilter(int healthPort, int dashboardPort, DashboardCredentials? credentials)
        : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            if (credentials is not null)
            {
                // Everything on the dashboard's port but the health probes asks for the user and password.
                app.Use(async (context, nextStep) =>
                {
                    var probe = context.Request.Path.StartsWithSegments(CloudTelemetry.HealthEndpointPath)
                        || context.Request.Path.StartsWithSegments(CloudTelemetry.AliveEndpointPath);
                    if (context.Connection.LocalPort == dashboardPort && !probe
                        && !credentials.Allows(context.Request.Headers.Authorization.ToString()))
                    {
                        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                        context.Response.Headers.WWWAuthenticate = "Basic realm=\"Cloud dashboard\", charset=\"UTF-8\"";
                        return;
                    }
                    await nextStep(context);
                });
            }
            app.UseRouting();
            app.UseEndpoints(endpoints =>
            {
                if (healthPort != HttpEndpointOptions.Off)
                    endpoints.MapDefaultEndpoints();
                if (dashboardPort != HttpEndpointOptions.Off)
                {
                    var dashboard = endpoints.MapOrleansDashboard();
                    // On its own port, keep the dashboard off the health port (which orchestrators may expose).
                    if (dashboardPort != healthPort) dashboard.RequireHost($"*:{dashboardPort}");
                }
            });
            next(app);
        };
    }

    /// <summary>The dashboard's user and password, checked against HTTP basic authentication in constant time.</summary>
    private sealed class DashboardCredentials(string user, string password)
    {
        private readonly byte[] _expected = Encoding.UTF8.GetBytes($"{user}:{password}");

        public bool Allows(string authorization)
        {
            const string scheme = "Basic ";
            if (!authorization.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)) return false;
            byte[] given;
            try { given = Convert.FromBase64String(authorization[scheme.Length..].Trim()); }
            catch (FormatException) { return false; }
            return CryptographicOperations.FixedTimeEquals(given, _expected);
        }
    }

    /// <summary>A server that serves nothing, for a silo with every HTTP endpoint off.</summary>
    private sealed class NoHttpServer : IServer
    {
        public IFeatureCollection Features { get; } = new FeatureCollection();

        public Task StartAsync<TContext>(
            IHttpApplication<TContext> application,
            CancellationToken cancellationToken) where TContext : notnull
            => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose()
        {
        }
    }
}

/// <summary>
/// Prints where the NBD server and the HTTP endpoints listen once they do, for operators and for scripts that wait for
/// them.
/// </summary>
internal sealed class EndpointAnnouncer(
    NbdServer nbd,
    IOptions<HttpEndpointOptions> http,
    IHostEnvironment environment) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var where = new List<string>();
        if (nbd.TcpEndPoint is { } tcp) where.Add($"nbd://{tcp}");
        if (nbd.UnixSocketPath is { } path) where.Add($"nbd+unix:///?socket={path}");
        Console.WriteLine(
            where.Count == 0
                ? "NBD off (--nbd-port 0 and no --nbd-socket)."
                : $"NBD serving every volume at {string.Join(" and ", where)}");
        var o = http.Value;
        if (o.Port != HttpEndpointOptions.Off)
            Console.WriteLine(
                $"Health checks at http://{o.Address}:{o.Port}{CloudTelemetry.HealthEndpointPath} and {CloudTelemetry.AliveEndpointPath}");
        var dashboardPort = o.EffectiveDashboardPort(environment.IsDevelopment());
        if (dashboardPort != HttpEndpointOptions.Off)
            Console.WriteLine(
                $"Orleans Dashboard at {(o.DashboardSecured ? "https" : "http")}://{o.DashboardAddress()}:{dashboardPort}/{(o.DashboardSecured ? " (user and password required)" : "")}");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
