using System.Buffers.Binary;
using System.Text.Json;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.Storage;

namespace Cloud.Grains.Tests;

/// <summary>
/// The catalog, the writer slots and the partition clocks as grain state in localhost mode (the file-backed storage
/// under <c>{data}/state</c>): they survive restarts, an activation whose write is refused goes on from nothing it did
/// not store, and a data directory from before is imported once.
/// </summary>
public sealed class ClusterStateTests : IDisposable
{
    private readonly string _data = Path.Combine(
        Path.GetTempPath(), "cloud-state-tests-" + Guid.NewGuid().ToString("N"));

    public ClusterStateTests() => Directory.CreateDirectory(_data);

    private Task<CloudCluster> StartAsync(int silos = 1)
        => CloudCluster.StartAsync(silos, o => o.DataDirectory = _data);

    private static IGrainStorage Storage(CloudCluster cluster) =>
        cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<IGrainStorage>(CloudGrainStorage.Name);

    private static VolumeInfo OldVolume(string name) =>
        new(
            name,
            Guid.NewGuid(),
            4 << 20,
            VolumeLevel.Raid5,
            3,
            64 << 10,
            false,
            ["/nowhere/a.img", "/nowhere/b.img", "/nowhere/c.img"],
            DateTimeOffset.UnixEpoch);

    /// <summary>Writes the files a data directory held before grain state, in their own format.</summary>
    private async Task WriteOldFilesAsync(
        VolumeInfo[] volumes,
        Dictionary<string, int> slots,
        Dictionary<string, long> clocks)
    {
        var json = new JsonSerializerOptions { WriteIndented = true };
        await File.WriteAllTextAsync(Path.Combine(_data, "catalog.json"), JsonSerializer.Serialize(volumes, json));
        await File.WriteAllTextAsync(Path.Combine(_data, "writer-slots.json"), JsonSerializer.Serialize(slots, json));
        Directory.CreateDirectory(Path.Combine(_data, "clocks"));
        foreach (var (key, reserved) in clocks)
        {
            var bytes = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(bytes, reserved);
            await File.WriteAllBytesAsync(Path.Combine(_data, "clocks", key.Replace('/', '-') + ".clock"), bytes);
        }
    }

    [Fact]
    public async Task Catalog_SurvivesARestartOfEverySilo_FromTheStateDirectory_NotCatalogJson()
    {
        await using (var first = await StartAsync())
        {
            await first.Client.CreateVolumeAsync(
                new VolumeSpec("kept", 2 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        }

        await using var second = await StartAsync();

        Assert.Equal(["kept"], (await second.Client.ListVolumesAsync()).Select(v => v.Name));
        Assert.False(File.Exists(Path.Combine(_data, "catalog.json")));
        Assert.False(File.Exists(Path.Combine(_data, "writer-slots.json")));
        Assert.False(Directory.Exists(Path.Combine(_data, "clocks")));
        Assert.Contains(
            Directory.GetFiles(FileGrainStorage.DirectoryUnder(_data)),
            f => Path.GetFileName(f).StartsWith(CloudGrainStorage.CatalogState + ".", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Catalog_WhoseWriteIsRefusedForAStaleETag_AppliesNothing_AndTheNextActivationReadsTheOtherWriter()
    {
        await using var cluster = await StartAsync();
        Assert.Empty(await cluster.Client.ListVolumesAsync());
        // Another activation (on a silo this one cannot see) writes the catalog behind this activation's back.
        var id = cluster.Grains(cluster.Silos[0]).GetGrain<IVolumeCatalogGrain>(0).GetGrainId();
        var other = new GrainState<VolumeCatalogState>();
        await Storage(cluster).ReadStateAsync(CloudGrainStorage.CatalogState, id, other);
        other.State = new VolumeCatalogState { Volumes = [OldVolume("theirs")] };
        await Storage(cluster).WriteStateAsync(CloudGrainStorage.CatalogState, id, other);

        var refused = await Assert.ThrowsAsync<CloudStorageException>(() =>
            cluster.Client.CreateVolumeAsync(new VolumeSpec("mine", 2 << 20, VolumeLevel.Raid5, 3, 64 << 10, false)));

        Assert.Contains(nameof(InconsistentStateException), refused.Message, StringComparison.Ordinal);
        await Eventually.TrueAsync(async () => (await cluster.Client.ListVolumesAsync()).Select(v => v.Name).SequenceEqual(["theirs"]),
            "a new catalog activation lists the other writer's volume and not the refused one");
        // The refused create left no member disks behind.
        Assert.Empty(
            Directory.Exists(Path.Combine(_data, "volumes")) ? Directory.GetDirectories(
                Path.Combine(_data, "volumes"), "mine-*") : []);
    }

    [Fact]
    public async Task PartitionClock_WhoseReservationIsRefusedForAStaleETag_HandsOutNothing_AndTheNextActivationStartsAboveTheOtherWriter()
    {
        await using var cluster = await StartAsync();
        const string key = "0123456789abcdef0123456789abcdef/0";
        var grains = cluster.Grains(cluster.Silos[0]);
        var partition = grains.GetGrain<IPartitionLockGrain>(key);
        await partition.GetControlAsync();
        var other = new GrainState<PartitionClockState>();
        await Storage(cluster).ReadStateAsync(CloudGrainStorage.ClockState, partition.GetGrainId(), other);
        other.State = new PartitionClockState { ReservedUpTo = 10 * PartitionClockStore.ReservationSize };
        await Storage(cluster).WriteStateAsync(CloudGrainStorage.ClockState, partition.GetGrainId(), other);

        await Assert.ThrowsAsync<CloudStorageException>(() => partition.NextTimestampAsync(0, 0, "nobody"));

        long next = 0;
        await Eventually.TrueAsync(async () =>
        {
            try { next = (await partition.NextTimestampAsync(0, 0, "nobody")).Timestamp; return true; }
            catch (CloudStorageException) { return false; }
        }, "a new partition-lock activation hands out a timestamp");
        Assert.Equal((10 * PartitionClockStore.ReservationSize) + 1, next);
    }

    [Fact]
    public async Task Import_OfADataDirectoryFromBefore_KeepsItsVolumesSlotsAndClocks_AndRenamesTheFilesOnce()
    {
        var volume = OldVolume("old");
        var partitionKey = VolumeMath.PartitionKey(volume, 3);
        await WriteOldFilesAsync([volume], new() { ["old-silo"] = 5 }, new() { [partitionKey] = 5000 });

        await using var cluster = await StartAsync();

        var listed = Assert.Single(await cluster.Client.ListVolumesAsync());
        Assert.Equal((volume.Name, volume.VolumeId), (listed.Name, listed.VolumeId));
        Assert.Equal(volume.DiskPaths.ToArray(), listed.DiskPaths.ToArray());
        var grains = cluster.Grains(cluster.Silos[0]);
        Assert.Equal(5, await grains.GetGrain<IWriterSlotsGrain>(0).GetWriterSlotAsync("old-silo"));
        Assert.NotEqual(5, await grains.GetGrain<IWriterSlotsGrain>(0).GetWriterSlotAsync("new-silo"));
        Assert.Equal(
            5001,
            (await grains.GetGrain<IPartitionLockGrain>(partitionKey).NextTimestampAsync(0, 0, "nobody")).Timestamp);
        Assert.True(File.Exists(Path.Combine(_data, "catalog.json.imported")));
        Assert.True(File.Exists(Path.Combine(_data, "writer-slots.json.imported")));
        Assert.True(Directory.Exists(Path.Combine(_data, "clocks.imported")));
        Assert.Empty(cluster.Service<StateImport>(cluster.Silos[0]).LegacyPaths());
    }

    [Fact]
    public async Task Import_WhenTheStorageHoldsADifferentCatalog_Refuses_NamingTheFilesAndTheCommandThatSetsThemAside()
    {
        await using var cluster = await StartAsync();
        await cluster.Client.CreateVolumeAsync(
            new VolumeSpec("stored", 2 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        await WriteOldFilesAsync([OldVolume("old")], new() { ["old-silo"] = 5 }, []);

        var refused = await Assert.ThrowsAsync<StateImportException>(
            () => cluster.Service<StateImport>(cluster.Silos[0]).RunAsync(CancellationToken.None));

        var catalogPath = Path.Combine(_data, "catalog.json");
        Assert.Contains($"mv '{catalogPath}' '{catalogPath}.imported'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("already holds a catalog", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', refused.Message);
        Assert.True(File.Exists(catalogPath));
        Assert.Equal(["stored"], (await cluster.Client.ListVolumesAsync()).Select(v => v.Name));
    }

    [Fact]
    public async Task Import_WhenTheStorageAlreadyHoldsTheSameCatalog_FinishesTheRenames_AsAfterACrashBetweenWritesAndRenames()
    {
        var volume = OldVolume("old");
        await WriteOldFilesAsync([volume], new() { ["old-silo"] = 5 }, []);
        await using var cluster = await StartAsync();
        // The first start imported and renamed; put the same files back, as if it had stopped before the renames.
        File.Move(Path.Combine(_data, "catalog.json.imported"), Path.Combine(_data, "catalog.json"));
        File.Move(Path.Combine(_data, "writer-slots.json.imported"), Path.Combine(_data, "writer-slots.json"));

        await cluster.Service<StateImport>(cluster.Silos[0]).RunAsync(CancellationToken.None);

        Assert.Empty(cluster.Service<StateImport>(cluster.Silos[0]).LegacyPaths());
        Assert.Equal(["old"], (await cluster.Client.ListVolumesAsync()).Select(v => v.Name));
    }

    public void Dispose()
    {
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { }
    }
}
