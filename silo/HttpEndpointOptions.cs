using System.Net;
using Microsoft.Extensions.Options;

namespace Cloud.Silo;

/// <summary>
/// The silo's HTTP endpoints (section <c>Http</c>): health checks and the Orleans Dashboard, on loopback by default.
/// </summary>
/// <remarks>
/// The health endpoint is off by default: whoever probes it (Aspire, Container Apps, a load balancer) also chooses
/// its port, and a fixed default port would stop a second silo on the same machine from starting. The dashboard is
/// on by default in the Development environment only (port <see cref="DefaultDevelopmentDashboardPort"/>), as it
/// shows every grain and silo with no authentication.
/// </remarks>
public sealed class HttpEndpointOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Http";

    /// <summary>
    /// The dashboard's port in Development when <see cref="DashboardPort"/> is not set (the dashboard's customary
    /// port).
    /// </summary>
    public const int DefaultDevelopmentDashboardPort = 8080;

    /// <summary>The port value that turns an endpoint off.</summary>
    public const int Off = 0;

    /// <summary>Address both endpoints listen on (an IP literal; default 127.0.0.1).</summary>
    public string Address { get; set; } = "127.0.0.1";

    /// <summary><c>--http-port</c>: port of <c>/health</c> and <c>/alive</c> (0 = off, the default; 1-65535).</summary>
    public int Port { get; set; } = Off;

    /// <summary>
    /// <c>--dashboard-port</c>: port of the Orleans Dashboard (0 = off; 1-65535). Unset: 8080 in Development, off
    /// otherwise. It may equal <see cref="Port"/>; then one listener serves both.
    /// </summary>
    public int? DashboardPort { get; set; }

    /// <summary>The dashboard port in effect in <paramref name="isDevelopment"/>'s environment (0 = off).</summary>
    public int EffectiveDashboardPort(bool isDevelopment)
        => DashboardPort ?? (isDevelopment ? DefaultDevelopmentDashboardPort : Off);
}

/// <summary>
/// Validates <see cref="HttpEndpointOptions"/>, naming the bad switch, its value and what is allowed.
/// </summary>
public sealed class HttpEndpointOptionsValidator : IValidateOptions<HttpEndpointOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, HttpEndpointOptions o)
    {
        var errors = new List<string>();
        if (!IPAddress.TryParse(o.Address, out _))
            errors.Add($"--http-address '{o.Address}' is not an IP address; use e.g. 127.0.0.1");
        if (o.Port is < 0 or > 65535)
            errors.Add($"--http-port {o.Port} is not allowed; use 0 (off) or 1-65535");
        if (o.DashboardPort is < 0 or > 65535)
            errors.Add($"--dashboard-port {o.DashboardPort} is not allowed; use 0 (off) or 1-65535");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
