using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Storage;

namespace Cloud.Grains.Tests;

/// <summary>
/// The contract of the file-backed grain storage of localhost mode, with the serializer a silo uses by default: the
/// ETag rule of Orleans' database providers, on the real file system.
/// </summary>
public sealed class FileGrainStorageTests : IDisposable
{
    private static readonly GrainId Catalog = GrainId.Create("volumecatalog", "0");
    private static readonly GrainId Partition = GrainId.Create("partitionlock", "0123456789abcdef0123456789abcdef/7");

    private readonly string _directory = Path.Combine(
        Path.GetTempPath(), "cloud-file-storage-" + Guid.NewGuid().ToString("N"));
    private readonly ServiceProvider _services;

    public FileGrainStorageTests()
    {
        var services = new ServiceCollection();
        services.AddSerializer();
        services.AddSingleton<OrleansJsonSerializer>();
        services.AddOptions<OrleansJsonSerializerOptions>();
        services.AddSingleton<IGrainStorageSerializer, JsonGrainStorageSerializer>();
        _services = services.BuildServiceProvider();
    }

    /// <summary>
    /// A provider over the test directory, as a silo (or another process sharing the directory) makes it.
    /// </summary>
    private FileGrainStorage NewStorage() => new(_directory, _services.GetRequiredService<IGrainStorageSerializer>());

    private static VolumeInfo Volume(string name) =>
        new(
            name,
            Guid.NewGuid(),
            4 << 20,
            VolumeLevel.Raid5,
            3,
            64 << 10,
            true,
            ["/d/a.img", "pageblob:c/b"],
            DateTimeOffset.UnixEpoch);

    [Fact]
    public async Task Read_OfAStateNeverWritten_GivesTheDefaultState_NoETag_AndNoRecord()
    {
        var state = new GrainState<PartitionClockState>();

        await NewStorage().ReadStateAsync(CloudGrainStorage.ClockState, Partition, state);

        Assert.Null(state.ETag);
        Assert.False(state.RecordExists);
        Assert.Equal(0, state.State!.ReservedUpTo);
    }

    [Fact]
    public async Task Write_ThenRead_FromAnotherProviderInstance_GivesTheStateAndTheNewETag()
    {
        var volumes = new List<VolumeInfo> { Volume("a"), Volume("b") };
        var written = new GrainState<VolumeCatalogState>(new VolumeCatalogState { Volumes = volumes });

        await NewStorage().WriteStateAsync(CloudGrainStorage.CatalogState, Catalog, written);
        var read = new GrainState<VolumeCatalogState>();
        await NewStorage().ReadStateAsync(CloudGrainStorage.CatalogState, Catalog, read);

        Assert.Equal("1", written.ETag);
        Assert.True(written.RecordExists);
        Assert.Equal(written.ETag, read.ETag);
        Assert.True(read.RecordExists);
        Assert.Equal(
            volumes.Select(v => (v.Name, v.VolumeId, v.SizeBytes, v.Level, v.CreatedUtc)),
            read.State!.Volumes.Select(v => (v.Name, v.VolumeId, v.SizeBytes, v.Level, v.CreatedUtc)));
        Assert.Equal(volumes[0].DiskPaths.ToArray(), read.State!.Volumes[0].DiskPaths.ToArray());
    }

    [Fact]
    public async Task Write_WithAStaleETag_IsRefused_AndLeavesTheOtherWritersState()
    {
        // Two activations read the same state; the first writes, so the second's ETag is stale.
        var first = new GrainState<PartitionClockState>();
        var second = new GrainState<PartitionClockState>();
        await NewStorage().ReadStateAsync(CloudGrainStorage.ClockState, Partition, first);
        await NewStorage().ReadStateAsync(CloudGrainStorage.ClockState, Partition, second);
        first.State!.ReservedUpTo = 100;
        await NewStorage().WriteStateAsync(CloudGrainStorage.ClockState, Partition, first);

        second.State!.ReservedUpTo = 50;
        var refused = await Assert.ThrowsAsync<InconsistentStateException>(
            () => NewStorage().WriteStateAsync(CloudGrainStorage.ClockState, Partition, second));

        Assert.Null(second.ETag);
        Assert.Equal("1", refused.StoredEtag);
        var read = new GrainState<PartitionClockState>();
        await NewStorage().ReadStateAsync(CloudGrainStorage.ClockState, Partition, read);
        Assert.Equal(100, read.State!.ReservedUpTo);
        Assert.Equal("1", read.ETag);
    }

    [Fact]
    public async Task Write_OfAStateThatExists_WithoutAnETag_IsRefused()
    {
        await NewStorage()
            .WriteStateAsync(
                CloudGrainStorage.ClockState,
                Partition,
                new GrainState<PartitionClockState>(new PartitionClockState { ReservedUpTo = 7 }));

        await Assert.ThrowsAsync<InconsistentStateException>(() =>
            NewStorage()
                .WriteStateAsync(
                    CloudGrainStorage.ClockState,
                    Partition,
                    new GrainState<PartitionClockState>(new PartitionClockState { ReservedUpTo = 1 })));
    }

    [Fact]
    public async Task Clear_LeavesNoRecord_AndRefusesWritesOfActivationsThatReadBeforeIt()
    {
        var storage = NewStorage();
        var state = new GrainState<PartitionClockState>(new PartitionClockState { ReservedUpTo = 9 });
        await storage.WriteStateAsync(CloudGrainStorage.ClockState, Partition, state);
        var before = new GrainState<PartitionClockState>();
        await storage.ReadStateAsync(CloudGrainStorage.ClockState, Partition, before);

        await storage.ClearStateAsync(CloudGrainStorage.ClockState, Partition, state);

        Assert.False(state.RecordExists);
        Assert.Equal("2", state.ETag);
        var after = new GrainState<PartitionClockState>();
        await storage.ReadStateAsync(CloudGrainStorage.ClockState, Partition, after);
        Assert.False(after.RecordExists);
        Assert.Equal("2", after.ETag);
        Assert.Equal(0, after.State!.ReservedUpTo);
        await Assert.ThrowsAsync<InconsistentStateException>(
            () => storage.WriteStateAsync(CloudGrainStorage.ClockState, Partition, before));
        after.State!.ReservedUpTo = 3;
        await storage.WriteStateAsync(CloudGrainStorage.ClockState, Partition, after);
        Assert.Equal("3", after.ETag);
    }

    [Fact]
    public async Task ConcurrentWriters_WithOneETag_ExactlyOneWins()
    {
        const int writers = 8;
        var states = Enumerable.Range(
            0,
            writers).Select(i => new GrainState<PartitionClockState>(
                new PartitionClockState { ReservedUpTo = i + 1 })).ToArray();

        // Each its own provider instance, as silos in separate processes sharing the data directory have.
        var results = await Task.WhenAll(states.Select(s => Task.Run(async () =>
        {
            try
            {
                await NewStorage().WriteStateAsync(CloudGrainStorage.ClockState, Partition, s);
                return true;
            }
            catch (InconsistentStateException)
            {
                return false;
            }
        })));

        Assert.Single(results, won => won);
        var read = new GrainState<PartitionClockState>();
        await NewStorage().ReadStateAsync(CloudGrainStorage.ClockState, Partition, read);
        Assert.Equal(states[Array.IndexOf(results, true)].State!.ReservedUpTo, read.State!.ReservedUpTo);
    }

    [Fact]
    public async Task EachGrainState_IsOneFile_UnderTheDirectory_WithSlashesInKeysEscaped()
    {
        var storage = NewStorage();
        await storage.WriteStateAsync(
            CloudGrainStorage.ClockState,
            Partition,
            new GrainState<PartitionClockState>(new PartitionClockState { ReservedUpTo = 1 }));
        await storage.WriteStateAsync(
            CloudGrainStorage.CatalogState, Catalog, new GrainState<VolumeCatalogState>(new VolumeCatalogState()));

        var files = Directory.GetFiles(_directory).Select(Path.GetFileName)
            .Where(f => f!.EndsWith(FileGrainStorage.FileExtension, StringComparison.Ordinal))
            .Order()
            .ToArray();

        Assert.Equal(2, files.Length);
        Assert.Equal(
            storage.PathOf(CloudGrainStorage.ClockState, Partition),
            Path.Combine(_directory, files.Single(f => f!.StartsWith("clock.", StringComparison.Ordinal))!));
        Assert.DoesNotContain(files, f => f!.Contains('/', StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(_directory, "*.tmp"));
    }

    [Fact]
    public async Task Read_OfAFileThatIsNotAGrainState_SaysSo()
    {
        var storage = NewStorage();
        Directory.CreateDirectory(_directory);
        await File.WriteAllTextAsync(storage.PathOf(CloudGrainStorage.ClockState, Partition), "garbage\n");

        var e = await Assert.ThrowsAsync<InvalidDataException>(
            () => storage.ReadStateAsync(
                CloudGrainStorage.ClockState, Partition, new GrainState<PartitionClockState>()));
        Assert.Contains("is not a grain state file", e.Message, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _services.Dispose();
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }
}
