using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Npgsql;
using Orleans.Hosting;

namespace Cloud.Clustering.Postgres;

/// <summary>
/// Silo and client builder extensions for Orleans ADO.NET clustering on Cloud's PostgreSQL schema. The schema itself
/// (and grain storage, which only silos need) is in <c>Cloud.Hosting.Postgres</c>.
/// </summary>
public static class PostgresClustering
{
    /// <summary>The ADO.NET invariant name to give the Orleans providers for PostgreSQL.</summary>
    public const string Invariant = "Npgsql";

    /// <summary>
    /// Uses ADO.NET clustering on PostgreSQL. The schema must exist (<c>PostgresSchema.ApplyAsync</c>).
    /// </summary>
    /// <exception cref="ArgumentException">The connection string is empty or invalid.</exception>
    public static ISiloBuilder UseCloudPostgresClustering(this ISiloBuilder builder, string connectionString)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var validated = ValidateConnectionString(connectionString);
        return builder.UseAdoNetClustering(options =>
        {
            options.Invariant = Invariant;
            options.ConnectionString = validated;
        });
    }

    /// <summary>
    /// Uses ADO.NET clustering on PostgreSQL through <paramref name="dataSource"/>, which decides how connections sign
    /// in (a password, or an Entra token). The caller owns the data source and disposes it after the host stops.
    /// </summary>
    public static ISiloBuilder UseCloudPostgresClustering(this ISiloBuilder builder, NpgsqlDataSource dataSource)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(dataSource);
        builder.UseAdoNetClustering(options =>
        {
            options.Invariant = Invariant;
            options.DataSource = dataSource;
        });
        // Configuration-based Orleans setup (Aspire's Orleans__Clustering__* keys) may also bind a connection string;
        // Orleans refuses both at once, and the data source is the one that knows how to sign in.
        builder.Services.PostConfigure<AdoNetClusteringSiloOptions>(options => options.ConnectionString = null!);
        return builder;
    }

    /// <summary>Finds gateways through the ADO.NET membership table on PostgreSQL.</summary>
    /// <exception cref="ArgumentException">The connection string is empty or invalid.</exception>
    public static IClientBuilder UseCloudPostgresClustering(this IClientBuilder builder, string connectionString)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var validated = ValidateConnectionString(connectionString);
        return builder.UseAdoNetClustering(options =>
        {
            options.Invariant = Invariant;
            options.ConnectionString = validated;
        });
    }

    /// <summary>The connection string in Npgsql's normal form.</summary>
    /// <exception cref="ArgumentException">It is empty or not a valid Npgsql connection string; the message says
    /// which.</exception>
    public static string ValidateConnectionString(string connectionString)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new ArgumentException(
                "The PostgreSQL connection string is empty; give one like 'Host=127.0.0.1;Port=5432;Database=cloud;Username=cloud;Password=...'.",
                nameof(connectionString));
        }

        try
        {
            return new NpgsqlConnectionStringBuilder(connectionString).ConnectionString;
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(
                $"The PostgreSQL connection string is not valid: {e.Message}", nameof(connectionString), e);
        }
    }
}
