using System.Reflection;
using Npgsql;

namespace Cloud.Hosting.Postgres;

/// <summary>
/// Creates or updates Cloud's PostgreSQL schema for the Orleans ADO.NET clustering and
/// grain-storage providers: the tables, the functions, and the stored queries the providers look up
/// in <c>OrleansQuery</c>. Applying it again is safe and brings the stored queries up to date.
/// </summary>
public static class PostgresSchema
{
    /// <summary>The ADO.NET invariant name to give the Orleans providers for PostgreSQL.</summary>
    public const string Invariant = Cloud.Clustering.Postgres.PostgresClustering.Invariant;

    /// <summary>The minimum PostgreSQL major version the schema needs (for NULLS NOT DISTINCT).</summary>
    public const int MinimumServerMajorVersion = 15;

    /// <summary>
    /// How long applying the schema may take, including waiting for another process that is applying it at the same
    /// moment.
    /// </summary>
    public static readonly TimeSpan DefaultApplyTimeout = TimeSpan.FromSeconds(60);

    // Any fixed 64-bit number unique to this use: silos that start together serialize on it, so
    // CREATE ... IF NOT EXISTS never races with itself (which PostgreSQL reports as a unique violation).
    private const long SchemaAdvisoryLockKey = 0x436C6F7564_5347; // "Cloud" "SG"

    private const string ScriptResourceName = "Cloud.Hosting.Postgres.schema.sql";

    private static readonly Lazy<string> ScriptText = new(LoadScript);

    /// <summary>
    /// The SQL script that <see cref="ApplyAsync(string, CancellationToken)"/> runs, for operators who apply it by
    /// hand.
    /// </summary>
    public static string Script => ScriptText.Value;

    /// <summary>
    /// Applies the schema to the database named in <paramref name="connectionString"/>, in one
    /// transaction. Several processes may call this at once.
    /// </summary>
    /// <param name="connectionString">An Npgsql connection string; the user needs CREATE on the database's public
    /// schema.</param>
    /// <param name="cancellationToken">Cancels the apply; the transaction is then rolled back.</param>
    /// <exception cref="ArgumentException">The connection string is empty or not a valid Npgsql connection
    /// string.</exception>
    /// <exception cref="InvalidOperationException">The server is older than PostgreSQL
    /// <see cref="MinimumServerMajorVersion"/>.</exception>
    public static async Task ApplyAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new ArgumentException(
                "The PostgreSQL connection string is empty; give one like 'Host=127.0.0.1;Port=5432;Database=cloud;Username=cloud;Password=...'.",
                nameof(connectionString));
        }

        NpgsqlConnectionStringBuilder builder;
        try
        {
            builder = new NpgsqlConnectionStringBuilder(connectionString);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(
                $"The PostgreSQL connection string is not valid: {e.Message}", nameof(connectionString), e);
        }

        await using var dataSource = NpgsqlDataSource.Create(builder);
        await ApplyAsync(dataSource, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Applies the schema through an existing data source; see <see cref="ApplyAsync(string, CancellationToken)"/>.
    /// </summary>
    public static async Task ApplyAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var serverMajorVersion = connection.PostgreSqlVersion.Major;
        if (serverMajorVersion < MinimumServerMajorVersion)
        {
            throw new InvalidOperationException(
                $"PostgreSQL {connection.PostgreSqlVersion} at {connection.Host}:{connection.Port} is too old for Cloud's schema; version {MinimumServerMajorVersion} or newer is needed.");
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key)", connection, transaction))
        {
            lockCommand.Parameters.AddWithValue("key", SchemaAdvisoryLockKey);
            lockCommand.CommandTimeout = (int)DefaultApplyTimeout.TotalSeconds;
            await lockCommand.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await using (var scriptCommand = new NpgsqlCommand(Script, connection, transaction))
        {
            scriptCommand.CommandTimeout = (int)DefaultApplyTimeout.TotalSeconds;
            await scriptCommand.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string LoadScript()
    {
        using Stream? stream = typeof(PostgresSchema).Assembly.GetManifestResourceStream(ScriptResourceName);
        if (stream is null)
        {
            throw new InvalidOperationException(
                $"The embedded resource '{ScriptResourceName}' is missing from {typeof(PostgresSchema).Assembly.GetName().Name}; the build did not embed Sql/schema.sql.");
        }

        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
