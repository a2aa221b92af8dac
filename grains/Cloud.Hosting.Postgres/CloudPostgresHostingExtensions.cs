using Cloud.Clustering.Postgres;
using Orleans.Configuration;
using Orleans.Hosting;

namespace Cloud.Hosting.Postgres;

/// <summary>
/// Silo builder extensions that wire Orleans grain storage and membership settings to Cloud's PostgreSQL schema;
/// clustering, which clients need too, is <see cref="PostgresClustering"/>.
/// </summary>
public static class CloudPostgresHostingExtensions
{
    /// <summary>Adds a named ADO.NET grain storage on PostgreSQL.</summary>
    /// <exception cref="ArgumentException">The name or connection string is empty or invalid.</exception>
    public static ISiloBuilder AddCloudPostgresGrainStorage(
        this ISiloBuilder builder,
        string name,
        string connectionString)
    {
        ArgumentNullException.ThrowIfNull(builder);
        CheckName(name);
        var validated = PostgresClustering.ValidateConnectionString(connectionString);
        return builder.AddAdoNetGrainStorage(name, options =>
        {
            options.Invariant = PostgresSchema.Invariant;
            options.ConnectionString = validated;
        });
    }

    /// <summary>
    /// Adds a named ADO.NET grain storage on PostgreSQL through <paramref name="dataSource"/>, which decides how
    /// connections sign in. The caller owns the data source and disposes it after the host stops.
    /// </summary>
    /// <exception cref="ArgumentException">The name is empty.</exception>
    public static ISiloBuilder AddCloudPostgresGrainStorage(
        this ISiloBuilder builder,
        string name,
        Npgsql.NpgsqlDataSource dataSource)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(dataSource);
        CheckName(name);
        return builder.AddAdoNetGrainStorage(name, options =>
        {
            options.Invariant = PostgresSchema.Invariant;
            options.DataSource = dataSource;
        });
    }

    /// <summary>
    /// Applies <see cref="CloudFailureDetection"/>'s membership settings so a crashed silo is declared dead within
    /// about 5 s.
    /// </summary>
    public static ISiloBuilder UseCloudFastFailureDetection(this ISiloBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Configure<ClusterMembershipOptions>(CloudFailureDetection.Apply);
        return builder;
    }

    private static void CheckName(string name)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ArgumentException(
                "The grain storage name is empty; give the name grains use in [PersistentState(..., storageName)].",
                nameof(name));
        }
    }
}
