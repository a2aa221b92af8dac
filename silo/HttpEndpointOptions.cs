using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Options;

namespace Cloud.Silo;

/// <summary>
/// The silo's HTTP endpoints (section <c>Http</c>): health checks and the Orleans Dashboard, on loopback by default.
/// The dashboard stays on loopback even when <see cref="Address"/> is not, unless it has an HTTPS certificate and a
/// user and password (<see cref="DashboardSecured"/>); the health endpoints answer only "Healthy" or "Unhealthy".
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

    /// <summary>
    /// <c>Http:CertificateFile</c>: the dashboard's HTTPS certificate (PEM). With <see cref="KeyFile"/>,
    /// <see cref="DashboardUser"/> and <see cref="DashboardPasswordFile"/> it lets the dashboard listen on
    /// <see cref="Address"/> when that is not loopback; without them the dashboard listens on 127.0.0.1 only.
    /// </summary>
    public string? CertificateFile { get; set; }

    /// <summary><c>Http:KeyFile</c>: the private key of <see cref="CertificateFile"/> (PEM).</summary>
    public string? KeyFile { get; set; }

    /// <summary><c>Http:DashboardUser</c>: the user name the dashboard asks for (HTTP basic authentication).</summary>
    public string? DashboardUser { get; set; }

    /// <summary>
    /// <c>Http:DashboardPasswordFile</c>: a file holding the dashboard's password (its first line). A file, not a
    /// value, so the password is in no environment variable, command line or settings listing.
    /// </summary>
    public string? DashboardPasswordFile { get; set; }

    /// <summary>True when the dashboard has a certificate and credentials, so it may listen beyond loopback.</summary>
    public bool DashboardSecured =>
        !string.IsNullOrWhiteSpace(CertificateFile) && !string.IsNullOrWhiteSpace(KeyFile)
        && !string.IsNullOrWhiteSpace(DashboardUser) && !string.IsNullOrWhiteSpace(DashboardPasswordFile);

    /// <summary>
    /// Where the dashboard listens: <see cref="Address"/> when it is loopback or the dashboard is secured, else
    /// 127.0.0.1. The dashboard shows every grain and silo and can reach into them, so it never serves a network in
    /// the clear or without a password.
    /// </summary>
    public IPAddress DashboardAddress()
    {
        var address = IPAddress.Parse(Address);
        return DashboardSecured || IPAddress.IsLoopback(address) ? address : IPAddress.Loopback;
    }
}

/// <summary>
/// Validates <see cref="HttpEndpointOptions"/>, naming the bad switch, its value and what is allowed.
/// </summary>
public sealed class HttpEndpointOptionsValidator(bool isDevelopment) : IValidateOptions<HttpEndpointOptions>
{
    /// <summary>A validator for an environment other than Development (the dashboard off unless given a port).</summary>
    public HttpEndpointOptionsValidator() : this(isDevelopment: false)
    {
    }

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, HttpEndpointOptions o)
    {
        var errors = new List<string>();
        if (!IPAddress.TryParse(o.Address, out var address))
            errors.Add($"--http-address '{o.Address}' is not an IP address; use e.g. 127.0.0.1");
        var dashboardPort = o.EffectiveDashboardPort(isDevelopment);
        string[] security = [o.CertificateFile ?? "", o.KeyFile ?? "", o.DashboardUser ?? "", o.DashboardPasswordFile ?? ""];
        if (security.Any(v => v.Length > 0) && !o.DashboardSecured)
            errors.Add("Http:CertificateFile, Http:KeyFile, Http:DashboardUser and Http:DashboardPasswordFile go together; give all four (docs/SECURITY.md)");
        else if (o.DashboardSecured) errors.AddRange(DashboardFileProblems(o));
        if (address is not null && !IPAddress.IsLoopback(address) && !o.DashboardSecured
            && dashboardPort != HttpEndpointOptions.Off && dashboardPort == o.Port)
            errors.Add($"--dashboard-port {dashboardPort} is the health port on --http-address {o.Address}, which is not loopback: the dashboard would serve that network without a password; give it its own port (it then listens on 127.0.0.1) or a certificate and credentials (docs/SECURITY.md)");
        if (o.Port is < 0 or > 65535)
            errors.Add($"--http-port {o.Port} is not allowed; use 0 (off) or 1-65535");
        if (o.DashboardPort is < 0 or > 65535)
            errors.Add($"--dashboard-port {o.DashboardPort} is not allowed; use 0 (off) or 1-65535");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static IEnumerable<string> DashboardFileProblems(HttpEndpointOptions o)
    {
        string? problem = null;
        try
        {
            using var certificate = X509Certificate2.CreateFromPemFile(o.CertificateFile!, o.KeyFile!);
            if (string.IsNullOrWhiteSpace(DashboardPassword.Read(o.DashboardPasswordFile!)))
                problem = $"Http:DashboardPasswordFile {o.DashboardPasswordFile} is empty; put the password on its first line";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException
            or ArgumentException)
        {
            // Names the files and the kind of failure, never their contents.
            problem = $"Http:CertificateFile {o.CertificateFile}, Http:KeyFile {o.KeyFile} or Http:DashboardPasswordFile {o.DashboardPasswordFile} cannot be used ({ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}); give readable PEM files and a password file";
        }
        if (problem is not null) yield return problem;
    }
}

/// <summary>The dashboard password, read from <see cref="HttpEndpointOptions.DashboardPasswordFile"/>.</summary>
internal static class DashboardPassword
{
    /// <summary>The file's first line, without its line end.</summary>
    public static string Read(string file)
    {
        using var reader = new StreamReader(file);
        return reader.ReadLine() ?? "";
    }
}
