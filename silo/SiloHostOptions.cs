using System.Net;
using Microsoft.Extensions.Options;

namespace Cloud.Silo;

/// <summary>How silos find each other.</summary>
public enum ClusteringKind
{
    /// <summary>One machine, no database: the embedded default.</summary>
    Localhost,
    /// <summary>ADO.NET membership on PostgreSQL (needs <see cref="SiloHostOptions.Connection"/>).</summary>
    Postgres,
}

/// <summary>How the silo signs in to PostgreSQL.</summary>
public enum PostgresSignIn
{
    /// <summary>With the connection string's password (or none, on a server that trusts the host).</summary>
    Password,
    /// <summary>
    /// With a Microsoft Entra token of the host's managed identity (<c>AZURE_CLIENT_ID</c> names a user-assigned one),
    /// as Azure Database for PostgreSQL with password authentication off requires. See <see cref="SiloCredential"/>.
    /// </summary>
    ManagedIdentity,
}

/// <summary>
/// The silo host's own options (section <c>Silo</c>); the grains' options are in section <c>Cloud</c>.
/// </summary>
public sealed class SiloHostOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Silo";

    /// <summary>Default for <see cref="SiloPort"/> (Orleans' usual silo-to-silo port).</summary>
    public const int DefaultSiloPort = 11111;

    /// <summary>Default for <see cref="GatewayPort"/> (Orleans' usual client gateway port).</summary>
    public const int DefaultGatewayPort = 30000;

    /// <summary>
    /// The silo's stable name (1-64 of A-Z a-z 0-9 . _ -). The RAID worker of this silo is keyed by it, so keep it
    /// across restarts. Default: the machine name.
    /// </summary>
    public string Name { get; set; } = Environment.MachineName;

    /// <summary>
    /// The host address the silo listens on and advertises to other silos and clients (<c>--address</c>): an IP
    /// literal of this host, or <c>auto</c> for the address the platform gives
    /// (<see cref="HostAddress.PlatformVariables"/>)
    /// or else the host's primary address. NBD and HTTP listen there too unless <c>--nbd-address</c> and
    /// <c>--http-address</c> say otherwise. Default 127.0.0.1, the embedded single-machine run.
    /// </summary>
    public string Address { get; set; } = DefaultAddress;

    /// <summary>Default for <see cref="Address"/>.</summary>
    public const string DefaultAddress = "127.0.0.1";

    /// <summary>Silo-to-silo port (1-65535).</summary>
    public int SiloPort { get; set; } = DefaultSiloPort;

    /// <summary>Client gateway port (1-65535), what <c>cloudctl --gateway</c> connects to.</summary>
    public int GatewayPort { get; set; } = DefaultGatewayPort;

    /// <summary>Membership: localhost (default) or postgres.</summary>
    public ClusteringKind Clustering { get; set; } = ClusteringKind.Localhost;

    /// <summary>The clustering database's connection string (postgres only; redacted in logs).</summary>
    public string? Connection { get; set; }

    /// <summary>
    /// How the silo signs in to PostgreSQL (<c>--postgres-sign-in password|managedidentity</c>; postgres only): with
    /// the connection string's password (default) or with an Entra token of the managed identity.
    /// </summary>
    public PostgresSignIn PostgresSignIn { get; set; } = PostgresSignIn.Password;

    /// <summary>Orleans cluster id; silos and clients of one cluster share it.</summary>
    public string ClusterId { get; set; } = "cloud";

    /// <summary>Orleans service id.</summary>
    public string ServiceId { get; set; } = "cloud";

    /// <summary>Apply Cloud's PostgreSQL schema at start (<c>--init-schema</c>; postgres only). Idempotent.</summary>
    public bool ApplySchema { get; set; }

    /// <summary>
    /// Cloud's fast failure detection (postgres only, default on): a killed silo is declared dead within about 5 s
    /// instead of Orleans' ~15 s. See docs/CLUSTER.md.
    /// </summary>
    public bool FastFailureDetection { get; set; } = true;

    /// <summary>Default for <see cref="DrainTimeout"/>.</summary>
    public static readonly TimeSpan DefaultDrainTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// How long a stopping silo waits (0-10 min) for its scheduled and held writes to commit before it leaves. Must be
    /// shorter than the host's shutdown timeout, which is set to this plus a margin.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = DefaultDrainTimeout;

    /// <summary>Mutual TLS on the silo and gateway ports (section <c>Silo:Tls</c>; see <see cref="SiloTlsOptions"/>).</summary>
    public SiloTlsOptions Tls { get; set; } = new();

    /// <inheritdoc />
    public override string ToString() =>
        $"Name={Name} Address={Address} SiloPort={SiloPort} GatewayPort={GatewayPort} Clustering={Clustering} Connection={(Connection is null ? "(none)" : "(redacted)")} Tls={Tls.Mode?.ToString() ?? "(by address)"}";
}

/// <summary>Validates <see cref="SiloHostOptions"/>, naming the bad field, its value and what is allowed.</summary>
public sealed class SiloHostOptionsValidator : IValidateOptions<SiloHostOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, SiloHostOptions o)
    {
        var errors = new List<string>();
        if (string.IsNullOrEmpty(o.Name)
            || o.Name.Length > 64
            || !o.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            errors.Add($"--name '{o.Name}' is not allowed; use 1-64 characters of A-Z a-z 0-9 . _ -");
        if (o.SiloPort is < 1 or > 65535)
            errors.Add($"--silo-port {o.SiloPort} is not allowed; use 1-65535");
        if (o.GatewayPort is < 1 or > 65535)
            errors.Add($"--gateway-port {o.GatewayPort} is not allowed; use 1-65535");
        if (o.SiloPort == o.GatewayPort)
            errors.Add($"--silo-port and --gateway-port are both {o.SiloPort}; use two different ports");
        if (o.Clustering == ClusteringKind.Postgres && string.IsNullOrWhiteSpace(o.Connection))
            errors.Add("--clustering postgres needs --connection with a PostgreSQL connection string");
        if (o.PostgresSignIn != PostgresSignIn.Password && o.Clustering != ClusteringKind.Postgres)
            errors.Add("--postgres-sign-in managedidentity needs --clustering postgres");
        if (o.ApplySchema && o.Clustering != ClusteringKind.Postgres)
            errors.Add("--init-schema needs --clustering postgres");
        if (o.DrainTimeout < TimeSpan.Zero || o.DrainTimeout > TimeSpan.FromMinutes(10))
            errors.Add($"Silo:DrainTimeout {o.DrainTimeout} is not allowed; use 00:00:00-00:10:00");
        if (string.IsNullOrWhiteSpace(o.ClusterId))
            errors.Add("--cluster-id is empty; give the id every silo and client of the cluster shares");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
