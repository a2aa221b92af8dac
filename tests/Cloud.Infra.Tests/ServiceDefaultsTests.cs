using System.Net;
using Cloud.ServiceDefaults;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OpenTelemetry.Trace;

namespace Cloud.Infra.Tests;

/// <summary>The health endpoints that AddServiceDefaults and MapDefaultEndpoints give a real Kestrel server.</summary>
public sealed class ServiceDefaultsTests
{
    [Fact]
    public async Task HealthAndAlive_AnswerHealthy_WhenEveryCheckPasses()
    {
        await using var app = await StartAsync(readinessHealthy: true);
        using var http = new HttpClient { BaseAddress = BaseAddress(app) };

        var health = await http.GetAsync(CloudTelemetry.HealthEndpointPath);
        var alive = await http.GetAsync(CloudTelemetry.AliveEndpointPath);

        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("Healthy", await health.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
    }

    [Fact]
    public async Task Health_Fails_ButAliveStaysUp_WhenAReadinessCheckFails()
    {
        await using var app = await StartAsync(readinessHealthy: false);
        using var http = new HttpClient { BaseAddress = BaseAddress(app) };

        var health = await http.GetAsync(CloudTelemetry.HealthEndpointPath);
        var alive = await http.GetAsync(CloudTelemetry.AliveEndpointPath);

        // A silo that cannot reach PostgreSQL must leave the load balancer, not be restarted.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
    }

    [Fact]
    public async Task Spans_AreRecordedOnlyWhenSomethingExportsThem()
    {
        // Recorded and dropped, the data path's spans cost a quarter to a third of its small writes.
        await using (var quiet = await StartAsync(readinessHealthy: true))
            Assert.Null(quiet.Services.GetService<TracerProvider>());
        await using var exporting = await StartAsync(readinessHealthy: true, otlpEndpoint: "http://127.0.0.1:4317");
        Assert.NotNull(exporting.Services.GetService<TracerProvider>());
    }

    private static async Task<WebApplication> StartAsync(bool readinessHealthy, string? otlpEndpoint = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        if (otlpEndpoint is not null) builder.Configuration[CloudTelemetry.OtlpEndpointVariable] = otlpEndpoint;
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.AddServiceDefaults();
        builder.Services.AddHealthChecks()
            .AddCheck(
                "database",
                () => readinessHealthy ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("no database"));
        var app = builder.Build();
        app.MapDefaultEndpoints();
        await app.StartAsync();
        return app;
    }

    private static Uri BaseAddress(WebApplication app) =>
        new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
}
