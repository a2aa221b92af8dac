namespace Cloud.ServiceDefaults;

/// <summary>The names under which Cloud and Orleans publish metrics and traces.</summary>
public static class CloudTelemetry
{
    /// <summary>
    /// Cloud's own meter: IOPS, bytes, latency histograms, delegation decisions, lock waits, queue depth, rebuild and
    /// scrub progress.
    /// </summary>
    public const string MeterName = "Cloud";

    /// <summary>Cloud's own activity source for traces.</summary>
    public const string ActivitySourceName = "Cloud";

    /// <summary>The meter Orleans publishes its runtime metrics under.</summary>
    public const string OrleansMeterName = "Microsoft.Orleans";

    /// <summary>
    /// Orleans' activity sources: runtime calls and application grain calls (with <c>AddActivityPropagation()</c> on
    /// the silo and client).
    /// </summary>
    public static readonly IReadOnlyList<string> OrleansActivitySourceNames =
        ["Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application"];

    /// <summary>The health-check tag that marks checks used by the liveness endpoint.</summary>
    public const string LiveTag = "live";

    /// <summary>The readiness endpoint: every health check.</summary>
    public const string HealthEndpointPath = "/health";

    /// <summary>The liveness endpoint: only checks tagged <see cref="LiveTag"/>.</summary>
    public const string AliveEndpointPath = "/alive";

    /// <summary>
    /// The environment variable that turns the OTLP exporter on (the Aspire dashboard and Azure Container Apps set it).
    /// </summary>
    public const string OtlpEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";
}
