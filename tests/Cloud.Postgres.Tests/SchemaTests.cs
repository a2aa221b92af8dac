using Cloud.Hosting.Postgres;
using Cloud.Testing;
using Npgsql;

namespace Cloud.Postgres.Tests;

/// <summary>The schema script against a real PostgreSQL.</summary>
public sealed class SchemaTests(PostgresFixture postgres) : IClassFixture<PostgresFixture>
{
    /// <summary>Every key the clustering and persistence providers look up in OrleansQuery (10.4.2).</summary>
    private static readonly string[] RequiredQueryKeys =
    [
        "InsertMembershipVersionKey", "UpdateIAmAlivetimeKey", "InsertMembershipKey", "UpdateMembershipKey",
        "MembershipReadRowKey", "MembershipReadAllKey", "GatewaysQueryKey", "DeleteMembershipTableEntriesKey",
        "CleanupDefunctSiloEntriesKey", "ReadFromStorageKey", "WriteToStorageKey", "ClearStorageKey",
        "DeleteStorageKey",
    ];

    [Fact]
    public async Task Apply_Twice_Succeeds_AndLeavesEveryProviderQueryStoredOnce()
    {
        var connectionString = await postgres.CreateDatabaseAsync("schema_twice");

        await PostgresSchema.ApplyAsync(connectionString);
        await PostgresSchema.ApplyAsync(connectionString);

        var keys = await ReadColumnAsync<string>(
            connectionString, "SELECT QueryKey FROM OrleansQuery ORDER BY QueryKey");
        Assert.Equal(RequiredQueryKeys.Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Apply_ConcurrentlyFromSeveralProcesses_Succeeds()
    {
        const int concurrentAppliers = 4;
        var connectionString = await postgres.CreateDatabaseAsync("schema_concurrent");

        await Task.WhenAll(
            Enumerable.Range(
                0, concurrentAppliers).Select(_ => Task.Run(() => PostgresSchema.ApplyAsync(connectionString))));

        var tables = await ReadColumnAsync<string>(connectionString,
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
        Assert.Equal(
            ["orleans_grain_state", "orleans_membership", "orleans_membership_version", "orleansquery"], tables);
    }

    [Fact]
    public async Task Apply_AgainAfterAQueryWasAltered_RestoresTheQuery()
    {
        var connectionString = await postgres.CreateDatabaseAsync("schema_restore");
        await PostgresSchema.ApplyAsync(connectionString);
        var original = (await ReadColumnAsync<string>(connectionString, "SELECT QueryText FROM OrleansQuery WHERE QueryKey = 'GatewaysQueryKey'"))
            .Single();
        await ExecuteAsync(
            connectionString, "UPDATE OrleansQuery SET QueryText = 'broken' WHERE QueryKey = 'GatewaysQueryKey'");

        await PostgresSchema.ApplyAsync(connectionString);

        var restored = (await ReadColumnAsync<string>(connectionString, "SELECT QueryText FROM OrleansQuery WHERE QueryKey = 'GatewaysQueryKey'"))
            .Single();
        Assert.Equal(original, restored);
    }

    [Fact]
    public async Task Apply_KeepsExistingMembershipRows()
    {
        var connectionString = await postgres.CreateDatabaseAsync("schema_keeps");
        await PostgresSchema.ApplyAsync(connectionString);
        await ExecuteAsync(
            connectionString, "INSERT INTO orleans_membership_version (deployment_id, version) VALUES ('c1', 7)");

        await PostgresSchema.ApplyAsync(connectionString);

        var versions = await ReadColumnAsync<int>(
            connectionString, "SELECT version FROM orleans_membership_version WHERE deployment_id = 'c1'");
        Assert.Equal([7], versions);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("Host=127.0.0.1;NoSuchKeyword=1")]
    public async Task Apply_WithBadConnectionString_ThrowsArgumentExceptionNamingTheProblem(string connectionString)
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => PostgresSchema.ApplyAsync(connectionString));
        Assert.Contains("connection string", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Script_IsEmbedded_AndUsesOnlyIdempotentDefinitions()
    {
        var script = PostgresSchema.Script;

        Assert.DoesNotContain("CREATE TABLE orleans", script, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("CREATE FUNCTION", script, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("CREATE INDEX orleans", script, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("ON CONFLICT (querykey) DO UPDATE", script, StringComparison.Ordinal);
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<List<T>> ReadColumnAsync<T>(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var values = new List<T>();
        while (await reader.ReadAsync())
        {
            values.Add(reader.GetFieldValue<T>(0));
        }

        return values;
    }
}
