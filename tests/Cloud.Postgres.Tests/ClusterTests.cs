using Cloud.Clustering.Postgres;
using Cloud.Hosting.Postgres;
using Cloud.Postgres.TestSilo;
using Cloud.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Orleans.Configuration;
using Orleans.Runtime;
using Xunit.Abstractions;

namespace Cloud.Postgres.Tests;

/// <summary>
/// Real silo processes (Cloud.Postgres.TestSilo) clustering through PostgreSQL with our schema, a
/// client in this process finding them through the ADO.NET gateway list, and SIGKILL crashes.
/// </summary>
public sealed class ClusterTests(PostgresFixture postgres, ITestOutputHelper output) : IClassFixture<PostgresFixture>
{
    /// <summary>SiloStatus values as the membership table stores them.</summary>
    private const int StatusActive = (int)SiloStatus.Active;
    private const int StatusDead = (int)SiloStatus.Dead;

    /// <summary>Generous bounds for a loaded 2-core machine; they only stop a broken test from hanging.</summary>
    private static readonly TimeSpan SiloStartTimeout = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan MembershipTimeout = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan DeathObservationTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task TwoSilos_FormOneClusterThroughPostgres_AndSeeEachOtherActive()
    {
        var connectionString = await postgres.CreateDatabaseAsync("two_silos");
        await PostgresSchema.ApplyAsync(connectionString);
        const string cluster = "two-silos";
        await using var silos = new SiloSet(connectionString, cluster);
        await silos.StartAsync(count: 2);

        var rows = await WaitForActiveSilosAsync(connectionString, cluster, expected: 2);
        Assert.Equal(silos.SiloPorts.Order(), rows.Select(r => r.Port).Order());

        await using var client = await ConnectClientAsync(connectionString, cluster);
        var hosts = await client.Client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
        Assert.Equal(silos.SiloPorts.Order(), hosts.Keys.Select(a => a.Endpoint.Port).Order());
        Assert.All(hosts.Values, status => Assert.Equal(SiloStatus.Active, status));
    }

    [Fact]
    public async Task GrainState_WrittenThroughAdoNetStorage_IsReadBackAfterDeactivation()
    {
        var connectionString = await postgres.CreateDatabaseAsync("grain_state");
        await PostgresSchema.ApplyAsync(connectionString);
        const string cluster = "grain-state";
        await using var silos = new SiloSet(connectionString, cluster);
        await silos.StartAsync(count: 1);
        await using var client = await ConnectClientAsync(connectionString, cluster);

        var counter = client.Client.GetGrain<ICounterGrain>("volume-a");
        Assert.Equal(5, await counter.AddAsync(5));
        Assert.Equal(12, await counter.AddAsync(7));
        Guid firstActivation = await counter.GetActivationTokenAsync();
        await counter.DeactivateAsync();

        // A new activation proves the value came from PostgreSQL, not from the old activation's memory.
        Guid secondActivation = await WaitForNewActivationAsync(counter, firstActivation);
        Assert.NotEqual(firstActivation, secondActivation);
        Assert.Equal(12, await counter.GetAsync());

        // Two writes after the insert at version 1: the row is at version 2 and one row per grain.
        var versions = await QueryAsync(connectionString,
            "SELECT version FROM orleans_grain_state WHERE grain_id_extension = 'volume-a' OR grain_type LIKE '%counter%'",
            r => r.GetInt32(0));
        Assert.Equal([2], versions);
    }

    [Fact]
    public async Task KilledSilo_IsDeclaredDeadInTheMembershipTable_WithinFiveSeconds()
    {
        var connectionString = await postgres.CreateDatabaseAsync("failure_detection");
        await PostgresSchema.ApplyAsync(connectionString);
        const string cluster = "failure-detection";
        await using var silos = new SiloSet(connectionString, cluster);
        await silos.StartAsync(count: 3);
        await WaitForActiveSilosAsync(connectionString, cluster, expected: 3);

        var victim = silos.Silos[1];
        DateTime killedAtUtc = await DatabaseNowAsync(connectionString);
        await victim.Process.KillAsync();

        var dead = await WaitForRowAsync(
            connectionString, cluster, victim.SiloPort, row => row.Status == StatusDead, DeathObservationTimeout);
        TimeSpan detection = dead.StatusChangedAtUtc - killedAtUtc;
        output.WriteLine(
            $"Silo on port {victim.SiloPort} killed at {killedAtUtc:O}, declared dead at {dead.StatusChangedAtUtc:O}: {detection.TotalSeconds:F2} s.");
        Assert.True(detection < CloudFailureDetection.TargetDeclarationTime,
            $"The killed silo was declared dead {detection.TotalSeconds:F2} s after SIGKILL; the target is {CloudFailureDetection.TargetDeclarationTime.TotalSeconds} s.");

        // The survivors stay active and agree the victim is gone.
        var rows = await ReadMembershipAsync(connectionString, cluster);
        Assert.Equal(2, rows.Count(r => r.Status == StatusActive));
    }

    private static Task<ClientHandle> ConnectClientAsync(string connectionString, string cluster) =>
        ClientHandle.StartAsync(connectionString, cluster);

    private static async Task<Guid> WaitForNewActivationAsync(ICounterGrain counter, Guid old)
    {
        // DeactivateOnIdle runs after the call returns; poll until a call lands on a new activation. The caller
        // asserts on the token, so the last one read is returned even when the wait ran out.
        Guid current = old;
        await Eventually.WithinAsync(
            async () => (current = await counter.GetActivationTokenAsync()) != old, MembershipTimeout, PollInterval);
        return current;
    }

    private async Task<List<MembershipRow>> WaitForActiveSilosAsync(
        string connectionString,
        string cluster,
        int expected)
    {
        var rows = await Eventually.ValueAsync(() => ReadMembershipAsync(connectionString, cluster),
            seen => seen.Count(r => r.Status == StatusActive) == expected, MembershipTimeout, PollInterval,
            seen => $"Expected {expected} active silos in the membership table within {MembershipTimeout}; rows: {string.Join("; ", seen)}");
        return rows.Where(r => r.Status == StatusActive).ToList();
    }

    private static async Task<MembershipRow> WaitForRowAsync(
        string connectionString,
        string cluster,
        int siloPort,
        Func<MembershipRow, bool> condition,
        TimeSpan timeout)
    {
        var rows = await Eventually.ValueAsync(() => ReadMembershipAsync(connectionString, cluster),
            seen => seen.SingleOrDefault(r => r.Port == siloPort) is { } row && condition(row), timeout, PollInterval,
            seen => $"The membership row for silo port {siloPort} did not reach the expected state within {timeout}; rows: {string.Join("; ", seen)}");
        return rows.Single(r => r.Port == siloPort);
    }

    private static Task<List<MembershipRow>> ReadMembershipAsync(string connectionString, string cluster) =>
        QueryAsync(connectionString,
            "SELECT port, status, status_changed_at FROM orleans_membership WHERE deployment_id = @cluster",
            r => new MembershipRow(r.GetInt32(0), r.GetInt32(1), r.GetFieldValue<DateTime>(2)),
            ("cluster", cluster));

    private static async Task<DateTime> DatabaseNowAsync(string connectionString) =>
        (await QueryAsync(connectionString, "SELECT clock_timestamp()", r => r.GetFieldValue<DateTime>(0))).Single();

    private static async Task<List<T>> QueryAsync<T>(
        string connectionString,
        string sql,
        Func<NpgsqlDataReader, T> read,
        params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<T>();
        while (await reader.ReadAsync())
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    private sealed record MembershipRow(int Port, int Status, DateTime StatusChangedAtUtc);

    /// <summary>A silo process and its ports.</summary>
    private sealed record SiloHandle(ChildProcess Process, int SiloPort, int GatewayPort);

    /// <summary>Starts silo processes on free ports and stops whatever is left on dispose.</summary>
    private sealed class SiloSet(string connectionString, string cluster) : IAsyncDisposable
    {
        public List<SiloHandle> Silos { get; } = [];

        public IEnumerable<int> SiloPorts => Silos.Select(s => s.SiloPort);

        public async Task StartAsync(int count)
        {
            var assembly = typeof(TestSiloProgram).Assembly.Location;
            var ports = FreePorts.Next(count * 2);
            for (var i = 0; i < count; i++)
            {
                int siloPort = ports[2 * i], gatewayPort = ports[(2 * i) + 1];
                var process = ChildProcess.StartDotnet($"silo {i} (port {siloPort})", assembly,
                [
                    "--connection", connectionString, "--cluster", cluster,
                    "--silo-port", siloPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "--gateway-port", gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ]);
                Silos.Add(new SiloHandle(process, siloPort, gatewayPort));
            }

            await Task.WhenAll(
                Silos.Select(s => s.Process.WaitForOutputAsync($"SILO-READY {s.SiloPort}", SiloStartTimeout)));
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var silo in Silos)
            {
                await silo.Process.DisposeAsync();
            }
        }
    }

    /// <summary>An Orleans client host in this process that finds gateways through PostgreSQL.</summary>
    private sealed class ClientHandle(IHost host) : IAsyncDisposable
    {
        private readonly IClusterClient _client = host.Services.GetRequiredService<IClusterClient>();

        public static async Task<ClientHandle> StartAsync(string connectionString, string cluster)
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.UseOrleansClient(client =>
            {
                client.Configure<ClusterOptions>(o =>
                {
                    o.ClusterId = cluster;
                    o.ServiceId = cluster;
                });
                client.UseCloudPostgresClustering(connectionString);
            });
            var host = builder.Build();
            await host.StartAsync();
            return new ClientHandle(host);
        }

        public IClusterClient Client => _client;

        public async ValueTask DisposeAsync()
        {
            await host.StopAsync();
            host.Dispose();
        }
    }
}
