using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Storage;

namespace Cloud.Grains.Hosting;

/// <summary>
/// Imports a data directory's cluster state from before it became grain state (<c>catalog.json</c>,
/// <c>writer-slots.json</c>, <c>clocks/</c>) into the grain storage <see cref="CloudGrainStorage.Name"/> (PostgreSQL
/// or <c>{data}/state</c>), once, while the silo starts and before it joins the cluster; then renames the files to
/// <c>*.imported</c> so they are never read again, and logs one line. A storage that already holds a different
/// catalog or slot table is never overwritten: the silo refuses to start with a <see cref="StateImportException"/>
/// that names the files and the command that sets them aside. Clocks merge by taking the higher reservation, which
/// is always safe, because timestamps need only grow.
/// </summary>
/// <remarks>
/// The same catalog or slot table already stored counts as imported: that is what a start that stopped between its
/// writes and its renames leaves, and the next start finishes the renames.
/// </remarks>
public sealed partial class StateImport(
    IServiceProvider services,
    IGrainFactory grains,
    CatalogStore catalogFiles,
    PartitionClockStore clockFiles,
    IOptions<CloudOptions> options,
    ILogger<StateImport> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    /// <summary>
    /// The silo lifecycle stage the import runs at: after the storage providers start, before the silo joins the
    /// cluster.
    /// </summary>
    public const int Stage = ServiceLifecycleStage.ApplicationServices + 1;

    /// <summary>How long a start waits for another process importing from the same data directory.</summary>
    public static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(60);

    private IGrainStorage Storage => services.GetRequiredKeyedService<IGrainStorage>(CloudGrainStorage.Name);

    /// <inheritdoc />
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(StateImport), Stage, cancellationToken => RunAsync(cancellationToken));

    /// <summary>The files and directories an import would read, of those that exist.</summary>
    public IReadOnlyList<string> LegacyPaths() =>
        [.. new[] { catalogFiles.CatalogPath, catalogFiles.SlotsPath }.Where(File.Exists),
         .. new[] { clockFiles.LegacyDirectory }.Where(Directory.Exists)];

    /// <summary>Imports the data directory's old state files, if it has any; a no-op otherwise.</summary>
    /// <exception cref="StateImportException">The storage already holds a different catalog or slot table.</exception>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        if (LegacyPaths().Count == 0) return;
        // Silos sharing a data directory (several on one machine) import one at a time; the later ones find nothing.
        var lockPath = Path.Combine(options.Value.DataDirectory, ".state-import.lock");
        await using var importLock = await FileLock.AcquireAsync(
            lockPath, LockTimeout, cancellationToken).ConfigureAwait(false);
        var paths = LegacyPaths();
        if (paths.Count == 0) return;

        var catalog = await ReadAsync<VolumeCatalogState>(
            CloudGrainStorage.CatalogState, CatalogId).ConfigureAwait(false);
        var slots = await ReadAsync<WriterSlotsState>(
            CloudGrainStorage.WriterSlotsState, SlotsId).ConfigureAwait(false);
        var legacyCatalog = await catalogFiles.LoadLegacyCatalogAsync().ConfigureAwait(false);
        var legacySlots = await catalogFiles.LoadLegacySlotsAsync().ConfigureAwait(false);
        CheckNoConflict(paths, catalog, legacyCatalog, slots, legacySlots);

        if (legacyCatalog is { } volumes && !catalog.RecordExists)
        {
            catalog.State =
                new VolumeCatalogState { Volumes = [.. volumes.OrderBy(v => v.Name, StringComparer.Ordinal)] };
            await Storage.WriteStateAsync(CloudGrainStorage.CatalogState, CatalogId, catalog).ConfigureAwait(false);
        }
        if (legacySlots is { } table && !slots.RecordExists)
        {
            slots.State = new WriterSlotsState { Slots = table };
            await Storage.WriteStateAsync(CloudGrainStorage.WriterSlotsState, SlotsId, slots).ConfigureAwait(false);
        }
        var clocks = await ImportClocksAsync().ConfigureAwait(false);
        foreach (var path in paths) RenameImported(path);
        LogImported(
            logger,
            string.Join(", ", paths),
            legacyCatalog?.Length ?? 0,
            legacySlots?.Count ?? 0,
            clocks,
            CloudGrainStorage.Name);
    }

    private GrainId CatalogId => grains.GetGrain<IVolumeCatalogGrain>(0).GetGrainId();

    private GrainId SlotsId => grains.GetGrain<IWriterSlotsGrain>(0).GetGrainId();

    private async Task<GrainState<T>> ReadAsync<T>(string stateName, GrainId id)
    {
        var state = new GrainState<T>();
        await Storage.ReadStateAsync(stateName, id, state).ConfigureAwait(false);
        return state;
    }

    /// <summary>
    /// Refuses an import that would overwrite a catalog or slot table the storage holds, unless it is the same.
    /// </summary>
    private void CheckNoConflict(
        IReadOnlyList<string> paths,
        GrainState<VolumeCatalogState> catalog, IReadOnlyList<VolumeInfo>? legacyCatalog,
        GrainState<WriterSlotsState> slots, Dictionary<string, int>? legacySlots)
    {
        var catalogDiffers = legacyCatalog is not null
            && catalog.RecordExists
            && !SameCatalog(catalog.State!.Volumes, legacyCatalog);
        var slotsDiffer = legacySlots is not null && slots.RecordExists && !SameSlots(slots.State!.Slots, legacySlots);
        if (!catalogDiffers && !slotsDiffer) return;
        var held = catalogDiffers && slotsDiffer
            ? "a catalog and a writer-slot table"
            : catalogDiffers ? "a catalog" : "a writer-slot table";
        var empty = Storage is FileGrainStorage files ? $"an empty {files.Directory}" : "an empty database";
        var setAside = string.Join(" && ", paths.Select(p => $"mv '{p}' '{p}{CatalogStore.ImportedSuffix}'"));
        throw new StateImportException(
            $"{string.Join(", ", paths)} hold cluster state from before it moved into grain storage, but grain storage '{CloudGrainStorage.Name}' " +
            $"already holds {held} that differs from them, and importing would overwrite it. To keep the stored state, set the files aside: " +
            $"{setAside} ; to import them instead, start the silo on {empty}.");
    }

    private static bool SameCatalog(IReadOnlyCollection<VolumeInfo> stored, IReadOnlyCollection<VolumeInfo> legacy) =>
        stored.Count == legacy.Count && legacy.All(l => stored.Any(s =>
            s.Name == l.Name && s.VolumeId == l.VolumeId && s.DiskPaths.SequenceEqual(
                l.DiskPaths, StringComparer.Ordinal)));

    private static bool SameSlots(Dictionary<string, int> stored, Dictionary<string, int> legacy) =>
        stored.Count == legacy.Count && legacy.All(l => stored.TryGetValue(l.Key, out var slot) && slot == l.Value);

    /// <summary>
    /// Raises each partition's stored reservation to the file's where the file's is higher; returns how many it raised.
    /// </summary>
    private async Task<int> ImportClocksAsync()
    {
        var skipped = new List<string>();
        var clocks = await clockFiles.ReadLegacyAsync(skipped).ConfigureAwait(false);
        foreach (var path in skipped) LogSkippedClock(logger, path);
        var raised = 0;
        foreach (var (key, reservedUpTo) in clocks ?? [])
        {
            var id = grains.GetGrain<IPartitionLockGrain>(key).GetGrainId();
            var clock = await ReadAsync<PartitionClockState>(CloudGrainStorage.ClockState, id).ConfigureAwait(false);
            if ((clock.State?.ReservedUpTo ?? 0) >= reservedUpTo) continue;
            clock.State = new PartitionClockState { ReservedUpTo = reservedUpTo };
            await Storage.WriteStateAsync(CloudGrainStorage.ClockState, id, clock).ConfigureAwait(false);
            raised++;
        }
        return raised;
    }

    private static void RenameImported(string path)
    {
        var target = path + CatalogStore.ImportedSuffix;
        if (Directory.Exists(path))
        {
            // A directory cannot replace another by rename; an earlier import's leftover goes first.
            if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
            Directory.Move(path, target);
        }
        else
        {
            File.Move(path, target, overwrite: true);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Imported {Paths} into grain storage '{Storage}': {Volumes} volumes, {Slots} writer slots, {Clocks} partition clocks raised; the files are renamed to *.imported and never read again")]
    private static partial void LogImported(
        ILogger logger,
        string paths,
        int volumes,
        int slots,
        int clocks,
        string storage);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Skipped {Path} in the import: its name is not of a partition clock ({{volume id}}-{{partition}}.clock)")]
    private static partial void LogSkippedClock(ILogger logger, string path);
}

/// <summary>
/// The silo refuses to start: importing the data directory's old state files would overwrite the stored cluster state.
/// The message says which files and what to do.
/// </summary>
public sealed class StateImportException : Exception
{
    /// <summary>Creates the exception.</summary>
    public StateImportException(string message) : base(message) { }

    /// <summary>The refusal among <paramref name="exception"/> and the exceptions it wraps, or null.</summary>
    public static StateImportException? Find(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is StateImportException refusal) return refusal;
            if (e is AggregateException aggregate)
                return aggregate.InnerExceptions.Select(Find).FirstOrDefault(r => r is not null);
        }
        return null;
    }
}
