using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Cloud.Silo;

/// <summary>
/// Checks made before the silo starts, so that the common mistakes of a new deployment (a port another process holds,
/// a database that is unreachable or has no schema) end in one line that says what to do, not in a stack trace from
/// deep inside Orleans.
/// </summary>
public static class StartChecks
{
    /// <summary>The table every Orleans ADO.NET provider reads its queries from; its absence means no schema.</summary>
    public const string QueryTable = "orleansquery";

    /// <summary>How long the schema probe may take to connect and ask.</summary>
    public static readonly TimeSpan DatabaseProbeTimeout = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long a silo waits for a missing schema to appear before it refuses: silos of one cluster often start
    /// together, and one of them (<c>--init-schema</c>) may be applying it at that moment.
    /// </summary>
    public static readonly TimeSpan SchemaWait = TimeSpan.FromSeconds(20);

    private static readonly TimeSpan SchemaPollInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// The first of <paramref name="ports"/> that cannot be bound on <paramref name="address"/>, as one error line, or
    /// null when all are free. Each entry names the switch that chose the port, for the message.
    /// </summary>
    public static string? PortInUse(IPAddress address, IEnumerable<(string Switch, int Port)> ports)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(ports);
        foreach (var (name, port) in ports)
        {
            using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                probe.Bind(new IPEndPoint(address, port));
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                return $"{name} {port}: {address}:{port} is already in use by another process; stop it or choose another port";
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressNotAvailable)
            {
                return $"{name} {port}: cannot listen on {address}: the address is not available on this host";
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AccessDenied)
            {
                return $"{name} {port}: not allowed to listen on {address}:{port} (ports below 1024 need privileges); choose a port of 1024 or more";
            }
        }
        return null;
    }

    /// <summary>
    /// Connects to the clustering database through <paramref name="dataSource"/> (which signs in as the silo will:
    /// password or Entra token) and looks for Cloud's schema, waiting up to <see cref="SchemaWait"/> for a schema
    /// another silo may be applying. Returns one error line (unreachable, refused, no token, or no schema, with the
    /// command that applies it), or null when the schema is there.
    /// </summary>
    public static async Task<string?> DatabaseProblemAsync(
        NpgsqlDataSource dataSource,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        var deadline = DateTime.UtcNow + SchemaWait;
        while (true)
        {
            var (problem, schemaMissing) = await ProbeAsync(dataSource, cancellationToken).ConfigureAwait(false);
            if (!schemaMissing || DateTime.UtcNow >= deadline) return problem;
            await Task.Delay(SchemaPollInterval, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task<(string? Problem, bool SchemaMissing)> ProbeAsync(
        NpgsqlDataSource dataSource,
        CancellationToken cancellationToken)
    {
        // Name the server without the password or any other secret the string holds.
        var parsed = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString);
        var where = $"PostgreSQL at {parsed.Host}:{parsed.Port}, database '{parsed.Database ?? parsed.Username}'";
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(DatabaseProbeTimeout);
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync(timeout.Token).ConfigureAwait(false);
            await using var command = new NpgsqlCommand("SELECT to_regclass(@t) IS NOT NULL", connection);
            command.Parameters.AddWithValue("t", QueryTable);
            var present = (bool)(await command.ExecuteScalarAsync(timeout.Token).ConfigureAwait(false))!;
            return present
                ? (null, false)
                : ($"{where} has no Cloud schema (no table '{QueryTable}'); start one silo once with --init-schema, or run 'cloudctl db init --connection ...'", true);
        }
        catch (Exception ex)
            when (ex is NpgsqlException or SocketException or TimeoutException or OperationCanceledException
                or InvalidOperationException)
        {
            // Npgsql may wrap a failed token fetch; the sign-in failure's own message names the identity and why.
            var signIn = Cloud.Hosting.Postgres.PostgresSignInException.Find(ex);
            var reason = (signIn?.Message ?? (ex.InnerException is SocketException inner ? inner.Message : ex.Message))
                .ReplaceLineEndings(" ");
            return ($"cannot use {where}: {reason}; check --connection and that the server accepts this host", false);
        }
    }
}
