using System.Buffers.Binary;
using System.Text.Json;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Hosting.Postgres;
using Cloud.Testing;
using Npgsql;
using Orleans.Configuration;
using Orleans.Runtime;
using Orleans.TestingHost;

namespace Cloud.Postgres.Tests;

/// <summary>
/// The catalog, the writer slots and the partition clocks as grain state on a real PostgreSQL: Cloud silos in this
/// process, each with its own data directory (so nothing can come from a shared file), storing through ADO.NET.
/// </summary>
public sealed class ClusterStateTests(PostgresFixture postgres) : IClassFixture<PostgresFixture>, IDisposable
{
    /// <summary>Generous bound for a loaded 2-core machine; it only stops a broken test from hanging.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    private readonly string _root = Path.Combine(Path.GetTempPath(), "cloud-pg-state-" + Guid.NewGuid().ToString("N"));

    private string DataOf(string siloName) => Path.Combine(_root, siloName);

    private async Task<string> NewDatabaseAsync(string prefix)
    {
        var connectionString = await postgres.CreateDatabaseAsync(prefix);
        await PostgresSchema.ApplyAsync(connectionString);
        return connectionString;
    }

    /// <summary>
    /// Starts Cloud silos whose grain storage is ADO.NET on <paramref name="connectionString"/>, each with its own data
    /// directory, or all with <paramref name="data"/>.
    /// </summary>
    private async Task<InProcessTestCluster> StartAsync(
        string connectionString,
        string serviceId,
        int silos,
        string? data = null)
    {
        var builder = new InProcessTestClusterBuilder((short)silos);
        builder.Options.ServiceId = serviceId;
        builder.ConfigureSilo((siloOptions, silo) =>
        {
            silo.AddCloudPostgresGrainStorage(CloudGrainStorage.Name, connectionString);
            silo.AddCloud(o =>
            {
                o.DataDirectory = data ?? DataOf(siloOptions.SiloName);
                o.LeaseCheckPeriod = TimeSpan.FromMilliseconds(100);
                o.LoadPublishPeriod = TimeSpan.FromMilliseconds(100);
            });
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromMilliseconds(500);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
                o.TableRefreshTimeout = TimeSpan.FromSeconds(1);
                o.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(1);
            });
        });
        var cluster = builder.Build();
        try
        {
            await cluster.DeployAsync().WaitAsync(Bound);
        }
        catch
        {
            await StopAsync(cluster);
            throw;
        }
        return cluster;
    }

    private static async Task StopAsync(InProcessTestCluster cluster)
    {
        try { await cluster.StopAllSilosAsync(); } catch (Exception) { /* a killed silo may throw on stop */ }
        await cluster.DisposeAsync();
    }

    /// <summary>
    /// Kills the silo that hosts <paramref name="grain"/>'s activation, so its memory is gone without a graceful
    /// deactivation.
    /// </summary>
    private static async Task<SiloAddress> KillHostOfAsync(InProcessTestCluster cluster, IAddressable grain)
    {
        var host = await cluster.Client.GetGrain<IManagementGrain>(0).GetActivationAddress(grain)
            ?? throw new InvalidOperationException("the grain has no activation");
        await cluster.KillSiloAsync(cluster.Silos.Single(s => s.SiloAddress.Equals(host)));
        return host;
    }

    /// <summary>
    /// Retries <paramref name="call"/> while the cluster notices the dead silo and places the grain anew.
    /// </summary>
    private static async Task<T> EventuallyAsync<T>(Func<Task<T>> call)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception ex)
                when (ex is SiloUnavailableException or TimeoutException or OrleansMessageRejectionException
                    && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }

    [Fact]
    public async Task Catalog_WrittenOnOneSilo_IsReadFromPostgres_ByANewActivationAfterThatSiloIsKilled()
    {
        var connectionString = await NewDatabaseAsync("catalog_moves");
        var cluster = await StartAsync(connectionString, "catalog-moves", silos: 2);
        try
        {
            var client = new CloudClient(cluster.Client);
            await client.CreateVolumeAsync(new VolumeSpec("moved", 2 << 20, VolumeLevel.Raid1, 2, 64 << 10, false));
            var catalog = cluster.Client.GetGrain<IVolumeCatalogGrain>(0);
            var killed = await KillHostOfAsync(cluster, catalog);

            var listed = await EventuallyAsync(() => client.ListVolumesAsync());

            Assert.Equal(["moved"], listed.Select(v => v.Name));
            var host = await cluster.Client.GetGrain<IManagementGrain>(0).GetActivationAddress(catalog);
            Assert.NotEqual(killed, host);
            // Nothing of the cluster state went to the silos' data directories.
            foreach (var silo in Directory.GetDirectories(_root))
            {
                Assert.False(File.Exists(Path.Combine(silo, "catalog.json")), $"{silo} has a catalog.json");
                Assert.False(
                    Directory.Exists(FileGrainStorage.DirectoryUnder(silo)),
                    $"{silo} has a file grain-state directory");
            }
        }
        finally
        {
            await StopAsync(cluster);
        }
    }

    [Fact]
    public async Task PartitionClock_KeepsGrowing_AcrossTheLossOfItsSilo_AndAcrossDeactivation()
    {
        var connectionString = await NewDatabaseAsync("clock_grows");
        var cluster = await StartAsync(connectionString, "clock-grows", silos: 2);
        try
        {
            var partition = cluster.Client.GetGrain<IPartitionLockGrain>("0123456789abcdef0123456789abcdef/0");
            Assert.Equal(1, (await partition.NextTimestampAsync(0, 0, "nobody")).Timestamp);
            await KillHostOfAsync(cluster, partition);

            // The new activation starts above the whole range the killed one reserved, which it may have handed out.
            var afterKill = await EventuallyAsync(() => partition.NextTimestampAsync(0, 0, "nobody"));
            Assert.Equal(PartitionClockStore.ReservationSize + 1, afterKill.Timestamp);

            await cluster.DeactivateAsync(partition);
            var afterDeactivation = await partition.NextTimestampAsync(0, 0, "nobody");
            Assert.Equal((2 * PartitionClockStore.ReservationSize) + 1, afterDeactivation.Timestamp);
        }
        finally
        {
            await StopAsync(cluster);
        }
    }

    /// <summary>Writes the files a data directory held before grain state, in their own format.</summary>
    private static async Task WriteOldFilesAsync(string data, VolumeInfo volume, long partition, long reservedUpTo)
    {
        Directory.CreateDirectory(Path.Combine(data, "clocks"));
        await File.WriteAllTextAsync(Path.Combine(data, "catalog.json"), JsonSerializer.Serialize(new[] { volume }));
        await File.WriteAllTextAsync(
            Path.Combine(data, "writer-slots.json"),
            JsonSerializer.Serialize(new Dictionary<string, int> { ["old-silo"] = 3 }));
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, reservedUpTo);
        await File.WriteAllBytesAsync(Path.Combine(data, "clocks", $"{volume.VolumeId:N}-{partition}.clock"), bytes);
    }

    private static VolumeInfo OldVolume(string name) =>
        new(
            name,
            Guid.NewGuid(),
            4 << 20,
            VolumeLevel.Raid1,
            2,
            64 << 10,
            false,
            ["/nowhere/a.img", "/nowhere/b.img"],
            DateTimeOffset.UnixEpoch);

    [Fact]
    public async Task Import_OfADataDirectoryFromBefore_OnFirstStartInPostgresMode_MovesItsStateIntoTheDatabase()
    {
        var connectionString = await NewDatabaseAsync("state_import");
        var volume = OldVolume("old");
        var data = DataOf("old-host");
        await WriteOldFilesAsync(data, volume, partition: 2, reservedUpTo: 7000);

        var cluster = await StartAsync(connectionString, "state-import", silos: 1, data);
        try
        {
            var listed = Assert.Single(await new CloudClient(cluster.Client).ListVolumesAsync());
            Assert.Equal((volume.Name, volume.VolumeId), (listed.Name, listed.VolumeId));
            var partition = cluster.Client.GetGrain<IPartitionLockGrain>($"{volume.VolumeId:N}/2");
            Assert.Equal(7001, (await partition.NextTimestampAsync(0, 0, "nobody")).Timestamp);
            Assert.True(File.Exists(Path.Combine(data, "catalog.json.imported")));
            Assert.True(File.Exists(Path.Combine(data, "writer-slots.json.imported")));
            Assert.True(Directory.Exists(Path.Combine(data, "clocks.imported")));
            // Catalog, writer slots and the partition's clock: one row each, and no file storage beside them.
            Assert.Equal(3, await CountStateRowsAsync(connectionString));
            Assert.False(Directory.Exists(FileGrainStorage.DirectoryUnder(data)));
        }
        finally
        {
            await StopAsync(cluster);
        }
    }

    [Fact]
    public async Task Start_WithOldFiles_WhenTheDatabaseHoldsADifferentCatalog_IsRefused_NamingTheFiles()
    {
        var connectionString = await NewDatabaseAsync("state_refused");
        await WriteOldFilesAsync(DataOf("first-host"), OldVolume("first"), partition: 0, reservedUpTo: 10);
        var first = await StartAsync(connectionString, "state-refused", silos: 1, DataOf("first-host"));
        await StopAsync(first);
        // Another host's data directory, with a catalog of its own, against the same database.
        await WriteOldFilesAsync(DataOf("second-host"), OldVolume("second"), partition: 0, reservedUpTo: 10);

        var refused = await Assert.ThrowsAnyAsync<Exception>(
            () => StartAsync(connectionString, "state-refused", silos: 1, DataOf("second-host")));

        var refusal = StateImportException.Find(refused);
        Assert.True(refusal is not null, $"the start failed, but not with the import's refusal: {refused}");
        var catalogPath = Path.Combine(DataOf("second-host"), "catalog.json");
        Assert.Contains($"mv '{catalogPath}' '{catalogPath}.imported'", refusal.Message, StringComparison.Ordinal);
        Assert.Contains("an empty database", refusal.Message, StringComparison.Ordinal);
        Assert.True(File.Exists(catalogPath));
    }

    private static async Task<long> CountStateRowsAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM orleans_grain_state", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
