using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Npgsql;

namespace Cloud.AppHost.Tests;

/// <summary>
/// Starts the real AppHost (no Docker: PostgreSQL from the local binaries) and checks the cluster it composes.
/// </summary>
public sealed class LocalClusterTests
{
    /// <summary>Generous bounds for a loaded 2-core machine; they only stop a broken run from hanging.</summary>
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(4);
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    private const long VolumeBytes = 64L << 20;
    private const int WriteBytes = 1 << 20;
    private const long WriteOffsetBytes = 3L << 20;
    private const int Seed = 7007;

    /// <summary>SiloStatus.Active as the membership table stores it.</summary>
    private const int StatusActive = 3;

    [Fact]
    public async Task AppHost_StartsPostgresAndThreeSilos_ThatFormOneClusterServingAVolume()
    {
        var dataDirectory = Directory.CreateTempSubdirectory("cloud-apphost-test-").FullName;
        try
        {
            var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.Cloud_AppHost>(
                ["--Cloud:PostgresMode=executable", $"--Cloud:DataDirectory={dataDirectory}", "--Cloud:SiloCount=3"]);
            await using var app = await builder.BuildAsync();
            using var timeout = new CancellationTokenSource(StartTimeout);
            await app.StartAsync(timeout.Token);

            // Healthy means the schema has been applied (the AppHost's postgres-schema health check).
            await app.ResourceNotifications.WaitForResourceHealthyAsync("postgres", timeout.Token);
            var connectionString = await app.GetConnectionStringAsync("cloud-postgres", timeout.Token)
                ?? throw new InvalidOperationException(
                    "The AppHost did not expose the cloud-postgres connection string.");
            Assert.Equal(13, await ScalarAsync<long>(connectionString, "SELECT count(*) FROM OrleansQuery"));

            var active = 0;
            while (!timeout.IsCancellationRequested)
            {
                active = (int)await ScalarAsync<long>(connectionString,
                    "SELECT count(*) FROM orleans_membership WHERE deployment_id = 'cloud-local' AND status = @active",
                    ("active", StatusActive));
                if (active == 3)
                {
                    break;
                }

                await Task.Delay(PollInterval, CancellationToken.None);
            }

            Assert.Equal(3, active);

            // Through the SDK, finding the gateways in the membership table as any client of this cluster would.
            await using var client = await CloudClient.ConnectPostgresAsync(
                connectionString, "cloud-local", "cloud-local", timeout.Token);
            await client.CreateVolumeAsync(
                new VolumeSpec("apphost", VolumeBytes, VolumeLevel.Raid5, 4, VolumeSpec.DefaultChunkSizeBytes, false));
            var volume = await client.OpenVolumeAsync("apphost");
            var written = new byte[WriteBytes];
            new Random(Seed).NextBytes(written);
            await volume.WriteAsync(WriteOffsetBytes, written, cancellationToken: timeout.Token);
            await volume.FlushAsync(timeout.Token);
            var read = new byte[WriteBytes];
            await volume.ReadAsync(WriteOffsetBytes, read, timeout.Token);
            Assert.True(
                written.AsSpan().SequenceEqual(read), $"the bytes read back differ from those written (seed {Seed})");
            var status = await client.GetClusterStatusAsync();
            Assert.Equal(3, status.Silos.Length);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            try
            {
                Directory.Delete(dataDirectory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static async Task<T> ScalarAsync<T>(
        string connectionString,
        string sql,
        params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }
}
