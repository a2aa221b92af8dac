using Npgsql;
using Orleans.Configuration;
using Orleans.Hosting;

namespace Cloud.Hosting.Postgres;

/// <summary>Silo and client builder extensions that wire Orleans to Cloud's PostgreSQL schema.</summary>
public static class CloudPostgresHostingExtensions
{
    /// <summary>Uses ADO.NET clustering on PostgreSQL. The schema must exist (see <see cref="PostgresSchema.ApplyAsync(string, CancellationToken)"/>).</summary>
    /// <exception cref="ArgumentException">The connection string is empty or invalid.</exception>
    public static ISiloBuilder UseCloudPostgresClustering(this ISiloBuilder builder, string connectionString)
    {
        ArgumentNullException.ThrowIfNull(builder);
        string validated = ValidateConnectionString(connectionString);
        return builder.UseAdoNetClustering(options =>
        {
            options.Invariant = PostgresSchema.Invariant;
            options.ConnectionString = validated;
        });
    }

    /// <summary>Finds gateways through the ADO.NET membership table on PostgreSQL.</summary>
    /// <exception cref="ArgumentException">The connection string is empty or invalid.</exception>
    public static IClientBuilder UseCloudPostgresClustering(this IClientBuilder builder, string connectionString)
    {
        ArgumentNullException.ThrowIfNull(builder);
        string validated = ValidateConnectionString(connectionString);
        return builder.UseAdoNetClustering(options =>
        {
            options.Invariant = PostgresSchema.Invariant;
            options.ConnectionString = validated;
        });
    }

    /// <summary>Adds a named ADO.NET grain storage on PostgreSQL.</summary>
    /// <exception cref="ArgumentException">The name or connection string is empty or invalid.</exception>
    public static ISiloBuilder AddCloudPostgresGrainStorage(this ISiloBuilder builder, string name, string connectionString)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ArgumentException("The grain storage name is empty; give the name grains use in [PersistentState(..., storageName)].", nameof(name));
        }

        string validated = ValidateConnectionString(connectionString);
        return builder.AddAdoNetGrainStorage(name, options =>
        {
            options.Invariant = PostgresSchema.Invariant;
            options.ConnectionString = validated;
        });
    }

    /// <summary>Applies <see cref="CloudFailureDetection"/>'s membership settings so a crashed silo is declared dead within about 5 s.</summary>
    public static ISiloBuilder UseCloudFastFailureDetection(this ISiloBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Configure<ClusterMembershipOptions>(CloudFailureDetection.Apply);
        return builder;
    }

    private static string ValidateConnectionString(string connectionString)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new ArgumentException("The PostgreSQL connection string is empty; give one like 'Host=127.0.0.1;Port=5432;Database=cloud;Username=cloud;Password=...'.", nameof(connectionString));
        }

        try
        {
            return new NpgsqlConnectionStringBuilder(connectionString).ConnectionString;
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"The PostgreSQL connection string is not valid: {e.Message}", nameof(connectionString), e);
        }
    }
}
