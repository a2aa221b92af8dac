using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Cloud.ServiceDefaults;

/// <summary>
/// One call that gives a Cloud service its telemetry, health checks, service discovery and HTTP
/// resilience, the way every Aspire service gets them.
/// </summary>
public static class ServiceDefaultsExtensions
{
    /// <summary>
    /// Adds OpenTelemetry logging, metrics (Orleans' and Cloud's meters, ASP.NET Core, HttpClient,
    /// runtime) and tracing, exported over OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (spans are
    /// recorded only then); a
    /// liveness health check; service discovery; and the standard resilience handler on every
    /// HttpClient.
    /// </summary>
    public static TBuilder AddServiceDefaults<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.ConfigureOpenTelemetry();
        builder.AddDefaultHealthChecks();
        builder.Services.AddServiceDiscovery();
        builder.Services.ConfigureHttpClientDefaults(http =>
        {
            // Retries, timeouts and a circuit breaker for calls to Azure and other HTTP services.
            http.AddStandardResilienceHandler();
            http.AddServiceDiscovery();
        });
        return builder;
    }

    /// <summary>Adds the OpenTelemetry part of <see cref="AddServiceDefaults{TBuilder}"/> alone.</summary>
    public static TBuilder ConfigureOpenTelemetry<TBuilder>(this TBuilder builder)
        where TBuilder : IHostApplicationBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Logging.AddOpenTelemetry(logging =>
        {
            logging.IncludeFormattedMessage = true;
            logging.IncludeScopes = true;
        });

        var exporting = !string.IsNullOrWhiteSpace(builder.Configuration[CloudTelemetry.OtlpEndpointVariable]);
        var telemetry = builder.Services.AddOpenTelemetry()
            .WithMetrics(metrics => metrics
                .AddMeter(CloudTelemetry.OrleansMeterName)
                .AddMeter(CloudTelemetry.MeterName)
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddRuntimeInstrumentation());
        if (!exporting) return builder;

        // Spans are recorded only when something exports them. Recorded and dropped, every grain call's, batch's and
        // member I/O's span cost the data path a quarter to a third of its small writes (docs/BENCHMARKS.md).
        telemetry
            .WithTracing(tracing => tracing
                .SetSampler(new AlwaysOnSampler())
                .AddSource(CloudTelemetry.ActivitySourceName)
                .AddSource([.. CloudTelemetry.OrleansActivitySourceNames])
                .AddAspNetCoreInstrumentation(options =>
                    // Health probes arrive every few seconds; tracing them would drown the real requests.
                    options.Filter = context =>
                        !context.Request.Path.StartsWithSegments(CloudTelemetry.HealthEndpointPath) &&
                        !context.Request.Path.StartsWithSegments(CloudTelemetry.AliveEndpointPath))
                .AddHttpClientInstrumentation())
            .UseOtlpExporter();
        return builder;
    }

    /// <summary>
    /// Adds the liveness check ("self", tagged <see cref="CloudTelemetry.LiveTag"/>); services add their own readiness
    /// checks.
    /// </summary>
    public static TBuilder AddDefaultHealthChecks<TBuilder>(this TBuilder builder)
        where TBuilder : IHostApplicationBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddHealthChecks()
            .AddCheck("self", () => HealthCheckResult.Healthy(), [CloudTelemetry.LiveTag]);
        return builder;
    }

    /// <summary>
    /// Maps <c>/health</c> (ready: every check passes) and <c>/alive</c> (live: the process responds).
    /// </summary>
    /// <remarks>
    /// Mapped in every environment, unlike the Aspire template, because Azure Container Apps probes
    /// them. They reveal only Healthy/Unhealthy; serve them on an internal port or behind the
    /// environment's ingress, never on a public endpoint with details.
    /// </remarks>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        ((IEndpointRouteBuilder)app).MapDefaultEndpoints();
        return app;
    }

    /// <summary>
    /// Maps <c>/health</c> and <c>/alive</c> on any endpoint route builder (for hosts that build their pipeline in
    /// <c>UseEndpoints</c>, such as the silo), with the same meaning as
    /// <see cref="MapDefaultEndpoints(WebApplication)"/>.
    /// </summary>
    public static IEndpointRouteBuilder MapDefaultEndpoints(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapHealthChecks(CloudTelemetry.HealthEndpointPath);
        endpoints.MapHealthChecks(CloudTelemetry.AliveEndpointPath, new HealthCheckOptions
        {
            Predicate = check => check.Tags.Contains(CloudTelemetry.LiveTag),
        });
        return endpoints;
    }
}
