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

    /// <summary>
    /// The write-hole recovery of the intent slots the engine left to its host, started once the volume opened
    /// (<see cref="WriterSlotRecovery.RecoverOpenedAsync"/>); a close waits for it. It never fails.
    /// </summary>
    internal Task RecoveryAfterOpen { get; set; } = Task.CompletedTask;
}

/// <summary>
/// The volumes whose engines are open on this silo: each is opened once from its member disks on first use and kept
/// until it is closed. Reads go straight to the open engine.
/// </summary>
/// <remarks>
/// Every engine of a volume on this silo must adopt a superblock change another silo publishes (a member failed, a
/// rebuild cursor moved) before that silo relies on it, i.e. before <see cref="RaidMaintenance.RefreshMembersAsync"/>
/// returns: the engines open, and those closing but still writing the copies they had queued, re-read at once
/// (<see cref="BeginRefresh"/>); an engine still opening may have read the superblocks before the change, so it reads
/// them again before its open completes, and serves no I/O before that. The request never waits for an open, which may
/// itself be publishing a change (an assembly that records a missing member) and waiting for this silo's answer.
/// </remarks>
public sealed partial class OpenVolumeCache(
    IVolumeStoreFactory factory,
    VolumeDirectory directory,
    SiloUsage usage,
    SiloRuntimeSettings settings,
    VolumeReach reach,
    WriterSlotRecovery slotRecovery,
    ILogger<OpenVolumeCache> logger) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Task<OpenVolume>> _volumes = new(StringComparer.Ordinal);

    // Under _gate: engines being closed (draining their queues), moved here from _volumes, and the number of refresh
    // requests so far, which an open compares before and after it read the superblocks.
    private readonly object _gate = new();
    private readonly List<Task<OpenVolume>> _closing = [];
    private long _refreshRequests;

    /// <summary>Whether the volume's engine is open or opening here.</summary>
    public bool HasOpen(string volumeName) => _volumes.ContainsKey(volumeName);

    /// <summary>Opens the volume's engine here, or returns the one already open.</summary>
    public async Task<OpenVolume> OpenAsync(string volumeName)
    {
        while (true)
        {
            if (_volumes.TryGetValue(volumeName, out var existing)) return await AwaitOpenAsync(volumeName, existing);
            var opening = new TaskCompletionSource<OpenVolume>(TaskCreationOptions.RunContinuationsAsynchronously);
            long requestsSeen;
            lock (_gate)
            {
                if (!_volumes.TryAdd(volumeName, opening.Task)) continue;
                requestsSeen = _refreshRequests;
            }
            try { await OpenNewAsync(volumeName, opening, requestsSeen).ConfigureAwait(false); }
            catch (Exception ex) { opening.TrySetException(ex); }
            return await AwaitOpenAsync(volumeName, opening.Task);
        }
    }

    private async Task<OpenVolume> AwaitOpenAsync(string volumeName, Task<OpenVolume> opening)
    {
        try
        {
            return await opening.ConfigureAwait(false);
        }
        catch
        {
            // A failed open (e.g. a missing disk file) must not stick: the next request tries again.
            _volumes.TryRemove(new KeyValuePair<string, Task<OpenVolume>>(volumeName, opening));
            throw;
        }
    }

    private async Task OpenNewAsync(string name, TaskCompletionSource<OpenVolume> opening, long requestsSeen)
    {
        var info = await directory.GetAsync(name).ConfigureAwait(false);
        // Only a silo that reaches every member opens the volume: a silo of another host would find a local member
        // missing and fail it for the whole cluster on no evidence.
        reach.CheckReachesHere(info);
        var store = await factory.OpenAsync(info, CancellationToken.None).ConfigureAwait(false);
        var v = new OpenVolume(info, new LatencyInjectingStore(store, () => settings.InjectedDiskLatency));
        try
        {
            if (store.StripeDataBytes != VolumeMath.StripeDataBytes(info))
                throw new InvalidOperationException(
                    $"volume '{name}': engine stripe of {store.StripeDataBytes} bytes disagrees with the catalog's {VolumeMath.StripeDataBytes(info)}");
            // A refresh request that came since the open started found no engine to refresh: this one may have read
            // the superblocks before the change, so it reads them again, until no request came meanwhile.
            while (!TryComplete(opening, v, ref requestsSeen))
                await v.Store.RefreshMembersAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            await v.Store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        // The engine did not resync the write-intent marks it found (other silos write the same stripes, and only
        // their partition locks make a resync safe): recover them under those locks beside the volume's I/O.
        v.RecoveryAfterOpen = slotRecovery.RecoverOpenedAsync(v);
    }

    /// <summary>
    /// Completes the open if no refresh request came since <paramref name="requestsSeen"/>; else updates it. Under the
    /// gate, so that a request either comes before (and this open re-reads) or finds the engine open (and refreshes
    /// it).
    /// </summary>
    private bool TryComplete(TaskCompletionSource<OpenVolume> opening, OpenVolume v, ref long requestsSeen)
    {
        lock (_gate)
        {
            if (_refreshRequests != requestsSeen)
            {
                requestsSeen = _refreshRequests;
                return false;
            }
            opening.SetResult(v);
            return true;
        }
    }

    /// <summary>
    /// Starts a refresh request: the engines that must re-read the superblocks now (open, or closing but still
    /// writing); an engine still opening re-reads them itself before its open completes.
    /// </summary>
    internal IReadOnlyList<OpenVolume> BeginRefresh()
    {
        lock (_gate)
        {
            _refreshRequests++;
            var engines = new List<OpenVolume>();
            foreach (var t in _volumes.Values) if (t.IsCompletedSuccessfully) engines.Add(t.Result);
            foreach (var t in _closing) if (t.IsCompletedSuccessfully) engines.Add(t.Result);
            return engines;
        }
    }

    /// <summary>The volume if it is open here already; a volume still opening, or whose open failed, is not.</summary>
    public bool TryGetOpen(
        string volumeName,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out OpenVolume? volume)
    {
        volume = _volumes.TryGetValue(volumeName, out var opening) && opening.IsCompletedSuccessfully
            ? opening.Result
            : null;
        return volume is not null;
    }

    /// <summary>The volume's open (finished or still running) if one was started here, else null.</summary>
    public Task<OpenVolume>? Opening(string volumeName)
        => _volumes.TryGetValue(volumeName, out var opening) ? opening : null;

    /// <summary>Every volume open here now.</summary>
    public IEnumerable<OpenVolume> Opened =>
        _volumes.Values.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result).ToList();

    /// <summary>
    /// Forgets the volume so that the next request opens it afresh, and closes the engine that was open with
    /// <paramref name="close"/> (which drains and disposes it); the engine keeps adopting published changes
    /// (<see cref="BeginRefresh"/>) until <paramref name="close"/> is done.
    /// </summary>
    public async Task CloseAsync(string volumeName, Func<OpenVolume, Task> close)
    {
        directory.Invalidate(volumeName);
        Task<OpenVolume>? opening;
        lock (_gate)
        {
            if (!_volumes.TryRemove(volumeName, out opening)) return;
            _closing.Add(opening);
        }
        try
        {
            OpenVolume v;
            try { v = await opening.ConfigureAwait(false); }
            catch (Exception) { return; /* a failed open has nothing to close */ }
            await close(v).ConfigureAwait(false);
        }
        finally
        {
            lock (_gate) _closing.Remove(opening);
        }
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
