using System.Collections.Concurrent;
using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Logging;

namespace Cloud.Grains.RaidWorkers;

/// <summary>A volume whose engine is open on this silo, with the RAID worker's queue of copies for it.</summary>
public sealed class OpenVolume
{
    internal OpenVolume(VolumeInfo info, IVolumeStore store)
    {
        Info = info;
        Store = store;
    }

    /// <summary>The volume's definition when it was opened.</summary>
    public VolumeInfo Info { get; }

    /// <summary>This silo's engine of the volume.</summary>
    public IVolumeStore Store { get; }

    /// <summary>The copies queued and running for the volume (the scheduler's state, under its own gate).</summary>
    internal VolumeQueue Queue { get; } = new();
}

/// <summary>
/// The volumes whose engines are open on this silo: each is opened once from its member disks on first use and kept
/// until it is closed. Reads go straight to the open engine.
/// </summary>
public sealed partial class OpenVolumeCache(
    IVolumeStoreFactory factory,
    VolumeDirectory directory,
    SiloUsage usage,
    SiloRuntimeSettings settings,
    VolumeReach reach,
    ILogger<OpenVolumeCache> logger) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<Task<OpenVolume>>> _volumes = new(StringComparer.Ordinal);

    /// <summary>Opens the volume's engine here, or returns the one already open.</summary>
    public async Task<OpenVolume> OpenAsync(string volumeName)
    {
        var lazy = _volumes.GetOrAdd(volumeName, name => new Lazy<Task<OpenVolume>>(() => OpenNewAsync(name)));
        try
        {
            return await lazy.Value.ConfigureAwait(false);
        }
        catch
        {
            // A failed open (e.g. a missing disk file) must not stick: the next request tries again.
            _volumes.TryRemove(new KeyValuePair<string, Lazy<Task<OpenVolume>>>(volumeName, lazy));
            throw;
        }
    }

    private async Task<OpenVolume> OpenNewAsync(string name)
    {
        var info = await directory.GetAsync(name).ConfigureAwait(false);
        // Only a silo that reaches every member opens the volume: a silo of another host would find a local member
        // missing and fail it for the whole cluster on no evidence.
        reach.CheckReachesHere(info);
        var store = await factory.OpenAsync(info, CancellationToken.None).ConfigureAwait(false);
        if (store.StripeDataBytes != VolumeMath.StripeDataBytes(info))
            throw new InvalidOperationException(
                $"volume '{name}': engine stripe of {store.StripeDataBytes} bytes disagrees with the catalog's {VolumeMath.StripeDataBytes(info)}");
        return new OpenVolume(info, new LatencyInjectingStore(store, () => settings.InjectedDiskLatency));
    }

    /// <summary>The volume if it is open here already; a volume still opening, or whose open failed, is not.</summary>
    public bool TryGetOpen(
        string volumeName,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out OpenVolume? volume)
    {
        volume = _volumes.TryGetValue(volumeName, out var lazy)
            && lazy.IsValueCreated
            && lazy.Value.IsCompletedSuccessfully
            ? lazy.Value.Result
            : null;
        return volume is not null;
    }

    /// <summary>The volume's open (finished or still running) if one was started here, else null.</summary>
    public Task<OpenVolume>? Opening(string volumeName)
        => _volumes.TryGetValue(volumeName, out var lazy) ? lazy.Value : null;

    /// <summary>Every volume open here now.</summary>
    public IEnumerable<OpenVolume> Opened =>
        _volumes.Values.Where(l => l.IsValueCreated && l.Value.IsCompletedSuccessfully).Select(l => l.Value.Result)
            .ToList();

    /// <summary>
    /// Every volume open here now or still opening. An open registers itself before it reads the superblocks, so a
    /// change announced after that read reaches the open through this list, not only through the read.
    /// </summary>
    public IEnumerable<Task<OpenVolume>> OpenedOrOpening =>
        _volumes.Values.Where(l => l.IsValueCreated).Select(l => l.Value).ToList();

    /// <summary>
    /// Forgets the volume so that the next request opens it afresh; returns it if it was open (the caller closes it).
    /// </summary>
    public async Task<OpenVolume?> RemoveAsync(string volumeName)
    {
        directory.Invalidate(volumeName);
        if (!_volumes.TryRemove(volumeName, out var lazy)) return null;
        try { return await lazy.Value.ConfigureAwait(false); }
        catch (Exception) { return null; }
    }

    /// <summary>Reads from this silo's engine. The caller holds a shared lock on the stripes.</summary>
    public async Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v.Info, offsetBytes, lengthBytes);
        var data = new byte[lengthBytes];
        await ReadIntoAsync(volumeName, offsetBytes, data).ConfigureAwait(false);
        return data;
    }

    /// <summary>
    /// Reads from this silo's engine into <paramref name="destination"/>. The caller holds a shared lock on the
    /// stripes.
    /// </summary>
    public async Task ReadIntoAsync(string volumeName, long offsetBytes, Memory<byte> destination)
    {
        var v = await OpenAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v.Info, offsetBytes, destination.Length);
        var started = Stopwatch.GetTimestamp();
        await v.Store.ReadAsync(offsetBytes, destination, CancellationToken.None).ConfigureAwait(false);
        usage.ObserveDiskLatency(Stopwatch.GetElapsedTime(started));
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        // No draining here: a killed silo must not finish its queue (its first servers re-delegate the copies).
        foreach (var v in Opened)
        {
            try { await v.Store.DisposeAsync().ConfigureAwait(false); }
            catch (Exception ex) { LogCloseFailed(logger, v.Info.Name, ex); }
        }
        _volumes.Clear();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: closing its engine failed")]
    private static partial void LogCloseFailed(ILogger logger, string volume, Exception exception);
}
