using Npgsql;

namespace Cloud.Hosting.Postgres;

/// <summary>
/// Builds the one <see cref="NpgsqlDataSource"/> a silo uses for the schema, the start checks, Orleans clustering
/// and grain storage, so that all of them sign in the same way: with the connection string's password, or with an
/// Entra token (<see cref="EntraTokenPassword"/>).
/// </summary>
public static class CloudPostgresDataSource
{
    /// <summary>
    /// A data source for <paramref name="connectionString"/>; with <paramref name="entraToken"/>, every new connection
    /// signs in with a token from it, and the connection string must then hold no password.
    /// </summary>
    /// <exception cref="ArgumentException">The connection string is empty, invalid, or holds a password while a token
    /// is to be used; the message says which.</exception>
    public static NpgsqlDataSource Create(string connectionString, EntraTokenPassword? entraToken = null)
    {
        var validated = Cloud.Clustering.Postgres.PostgresClustering.ValidateConnectionString(connectionString);
        var builder = new NpgsqlDataSourceBuilder(validated);
        if (entraToken is not null)
        {
            if (!string.IsNullOrEmpty(builder.ConnectionStringBuilder.Password))
            {
                throw new ArgumentException(
                    "The PostgreSQL connection string holds a password, but the silo signs in with an Entra token; remove Password= from it (or sign in with the password instead).",
                    nameof(connectionString));
            }
            entraToken.Apply(builder);
        }
        return builder.Build();
    }
}
