using System.Net;
using Azure.Core;
using Azure.Identity;
using Cloud.Clustering.Postgres;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Hosting.Postgres;
using Cloud.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Orleans.Configuration;

namespace Cloud.Postgres.Tests;

/// <summary>
/// PostgreSQL sign-in with Entra tokens (<see cref="EntraTokenPassword"/>, <see cref="CloudPostgresDataSource"/>)
/// against a real server that, for the signing-in role, checks a password (scram-sha-256), as Azure Database for
/// PostgreSQL checks the token: a test credential hands out tokens that are that role's password. This class owns its
/// server, because it changes the server's pg_hba.conf.
/// </summary>
public sealed class EntraSignInTests(PostgresFixture postgres) : IClassFixture<PostgresFixture>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);
    private static int _roles;

    [Fact]
    public async Task DataSource_SignsInWithTheCredentialsToken_AndReusesItWhileValid()
    {
        var (connectionString, role) = await TokenRoleAsync("token-one");
        var clock = new ManualClock();
        var credential = new TestCredential(clock) { Next = "token-one" };
        var password = new EntraTokenPassword(credential, "the test identity", clock);
        await using var dataSource = CloudPostgresDataSource.Create(connectionString, password);

        // Pooling is off in this connection string, so each open is a new sign-in.
        for (var i = 0; i < 3; i++) Assert.Equal(role, await CurrentUserAsync(dataSource));

        Assert.Equal(1, credential.Calls);
        Assert.Equal([EntraTokenPassword.Scope], credential.Scopes);
    }

    [Fact]
    public async Task Token_IsRefreshedBeforeItExpires_AndTheNewTokenSignsIn()
    {
        var (connectionString, role) = await TokenRoleAsync("token-one");
        var clock = new ManualClock();
        var credential = new TestCredential(clock) { Next = "token-one", Lifetime = TimeSpan.FromHours(1) };
        await using var dataSource = CloudPostgresDataSource.Create(
            connectionString, new EntraTokenPassword(credential, "the test identity", clock));
        Assert.Equal(role, await CurrentUserAsync(dataSource));

        // The server now accepts only the second token; the first one is inside the refresh margin of its expiry.
        await SetPasswordAsync(role, "token-two");
        credential.Next = "token-two";
        clock.Advance(TimeSpan.FromHours(1) - EntraTokenPassword.RefreshMargin + TimeSpan.FromSeconds(1));

        Assert.Equal(role, await CurrentUserAsync(dataSource));
        Assert.Equal(2, credential.Calls);
    }

    [Fact]
    public async Task FailedTokenFetch_IsNamedClearly_WithTheIdentityTheScopeAndTheReason()
    {
        var (connectionString, _) = await TokenRoleAsync("token-one");
        var credential = new TestCredential(new ManualClock())
        {
            Failure = new CredentialUnavailableException("no managed identity endpoint on this host"),
        };
        await using var dataSource = CloudPostgresDataSource.Create(
            connectionString, new EntraTokenPassword(credential, "the managed identity AZURE_CLIENT_ID=abc", null));

        var thrown = await Assert.ThrowsAnyAsync<Exception>(() => CurrentUserAsync(dataSource));

        var signIn = thrown as PostgresSignInException ?? Assert.IsType<PostgresSignInException>(thrown.InnerException);
        Assert.Contains("AZURE_CLIENT_ID=abc", signIn.Message, StringComparison.Ordinal);
        Assert.Contains(EntraTokenPassword.Scope, signIn.Message, StringComparison.Ordinal);
        Assert.Contains("no managed identity endpoint on this host", signIn.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ConnectionString_WithAPassword_IsRefused_WhenTokensSignIn()
    {
        var password = new EntraTokenPassword(new TestCredential(new ManualClock()), "the test identity");

        var thrown = Assert.Throws<ArgumentException>(
            () => CloudPostgresDataSource.Create("Host=127.0.0.1;Username=u;Password=secret", password));

        Assert.Contains("Password=", thrown.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", thrown.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SchemaClusteringAndGrainStorage_AllSignInThroughTheOneTokenDataSource()
    {
        var (connectionString, role) = await TokenRoleAsync("token-one", owner: true);
        var clock = new ManualClock();
        var credential = new TestCredential(clock) { Next = "token-one" };
        await using var dataSource = CloudPostgresDataSource.Create(
            connectionString, new EntraTokenPassword(credential, "the test identity", clock));
        await PostgresSchema.ApplyAsync(dataSource);
        var data = Directory.CreateTempSubdirectory("cloud-entra-");
        var ports = FreePorts.Next(2);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseOrleans(silo =>
        {
            silo.ConfigureEndpoints(IPAddress.Loopback, ports[0], ports[1], listenOnAnyHostAddress: false);
            silo.Configure<ClusterOptions>(o => { o.ClusterId = "entra"; o.ServiceId = "entra"; });
            silo.UseCloudPostgresClustering(dataSource);
            silo.AddCloudPostgresGrainStorage(CloudGrainStorage.Name, dataSource);
            silo.AddCloud(o => o.DataDirectory = data.FullName);
        });
        using var host = builder.Build();
        try
        {
            await host.StartAsync().WaitAsync(Bound);
            var catalog = host.Services.GetRequiredService<IGrainFactory>().GetGrain<IVolumeCatalogGrain>(0);
            Assert.Empty(await catalog.ListAsync());

            // The membership row and the catalog's state row were written by the token's role.
            Assert.Equal(1L, await ScalarAsync<long>(
                dataSource, "SELECT count(*) FROM orleans_membership WHERE deployment_id = 'entra' AND status = 3"));
            Assert.Equal(role, await CurrentUserAsync(dataSource));
            Assert.Equal(1, credential.Calls);
        }
        finally
        {
            await host.StopAsync();
            data.Delete(recursive: true);
        }
    }

    /// <summary>
    /// A fresh database and a role of its own that signs in only with <paramref name="token"/> as its password; the
    /// connection string names the role, has no password and no pooling.
    /// </summary>
    private async Task<(string ConnectionString, string Role)> TokenRoleAsync(string token, bool owner = false)
    {
        var database = new NpgsqlConnectionStringBuilder(await postgres.CreateDatabaseAsync("entra")).Database!;
        var role = $"entra_silo_{Interlocked.Increment(ref _roles)}";
        await ExecuteAsync(postgres.Server.ConnectionString(),
            $"CREATE ROLE {role} LOGIN PASSWORD '{token}'",
            owner ? $"ALTER DATABASE {database} OWNER TO {role}" : $"GRANT CONNECT ON DATABASE {database} TO {role}");
        await RequirePasswordAsync(role);
        var connectionString = new NpgsqlConnectionStringBuilder(postgres.Server.ConnectionString(database))
        {
            Username = role,
            Pooling = false,
        }.ConnectionString;
        return (connectionString, role);
    }

    /// <summary>
    /// Makes the server check <paramref name="role"/>'s password (the fixture's server trusts every local user).
    /// </summary>
    private async Task RequirePasswordAsync(string role)
    {
        var hba = Path.Combine(postgres.Server.RootDirectory, "data", "pg_hba.conf");
        var lines = await File.ReadAllLinesAsync(hba);
        await File.WriteAllLinesAsync(hba, [$"host all {role} 127.0.0.1/32 scram-sha-256", .. lines]);
        await ExecuteAsync(postgres.Server.ConnectionString(), "SELECT pg_reload_conf()");
        // The postmaster re-reads the file on the signal; a wrong password must be refused before the test goes on.
        await Eventually.TrueAsync(async () =>
        {
            try
            {
                await using var wrong = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(
                    postgres.Server.ConnectionString()) { Username = role, Password = "wrong", Pooling = false }
                    .ConnectionString);
                await wrong.OpenAsync();
                return false;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.InvalidPassword)
            {
                return true;
            }
        }, "pg_hba.conf change to take effect");
    }

    private Task SetPasswordAsync(string role, string token) =>
        ExecuteAsync(postgres.Server.ConnectionString(), $"ALTER ROLE {role} PASSWORD '{token}'");

    private static async Task ExecuteAsync(string connectionString, params string[] statements)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        foreach (var sql in statements)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync();
        }
    }

    private static Task<string> CurrentUserAsync(NpgsqlDataSource dataSource) =>
        ScalarAsync<string>(dataSource, "SELECT current_user");

    private static async Task<T> ScalarAsync<T>(NpgsqlDataSource dataSource, string sql)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>A clock the test moves by hand.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private DateTimeOffset _now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => _now;

        public void Advance(TimeSpan by) => _now += by;
    }

    /// <summary>Hands out <see cref="Next"/> as a token valid for <see cref="Lifetime"/>, or throws.</summary>
    private sealed class TestCredential(TimeProvider clock) : TokenCredential
    {
        public string Next { get; set; } = "token";
        public TimeSpan Lifetime { get; set; } = TimeSpan.FromHours(24);
        public Exception? Failure { get; init; }
        public int Calls { get; private set; }
        public List<string> Scopes { get; } = [];

        public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken)
        {
            Calls++;
            Scopes.AddRange(requestContext.Scopes);
            if (Failure is not null) throw Failure;
            return new AccessToken(Next, clock.GetUtcNow() + Lifetime);
        }

        public override ValueTask<AccessToken> GetTokenAsync(
            TokenRequestContext requestContext,
            CancellationToken cancellationToken) =>
            ValueTask.FromResult(GetToken(requestContext, cancellationToken));
    }
}
