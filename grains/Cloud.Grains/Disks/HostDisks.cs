using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Storage.Devices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.Disks;

/// <summary>
/// The disk service's client on this silo: opens, places and deletes members that are files of another host, through
/// a live silo of that host (from the load table). A member of this silo's host is not remote: the engine opens it
/// directly.
/// </summary>
public sealed partial class HostDisks(
    IGrainFactory grains,
    LoadTable loadTable,
    ILocalSiloDetails silo,
    DiskServer local,
    DiskStreamClient stream,
    IOptions<CloudOptions> options,
    ILogger<HostDisks> logger)
{
    /// <summary>The bound on this silo's outstanding I/Os to one remote member.</summary>
    public const int MaxInFlightIoPerMember = 32;

    /// <summary>Whether a member of <paramref name="host"/> (null or empty: a shared disk) is another host's file.</summary>
    public bool IsRemote(string? host) => host is { Length: > 0 } && host != options.Value.HostName;

    /// <summary>A live, not draining silo of <paramref name="host"/>, the lowest name first; null when none is.</summary>
    public string? ServingSilo(string host)
    {
        string? best = null;
        foreach (var entry in loadTable.Entries)
        {
            if (entry.HostName != host || entry.Draining || loadTable.Find(entry.SiloAddress) is null) continue;
            if (best is null || string.CompareOrdinal(entry.SiloName, best) < 0) best = entry.SiloName;
        }
        return best;
    }

    /// <summary>
    /// Creates member <paramref name="index"/> of <paramref name="volume"/> at <paramref name="sizeBytes"/> on its host
    /// when that host is another one; null when the member is not remote.
    /// </summary>
    /// <exception cref="CloudStorageException">No live silo of the member's host.</exception>
    public async ValueTask<IBlockDevice?> CreateRemoteAsync(
        VolumeInfo volume,
        int index,
        long sizeBytes,
        CancellationToken cancellationToken)
    {
        if (!IsRemote(volume.MemberHost(index))) return null;
        var host = volume.MemberHost(index)!;
        return await OpenOnAsync(host, ServerOf(host), volume.DiskPaths[index], sizeBytes, cancellationToken)
            ?? throw new CloudStorageException($"host '{host}' did not create member {volume.DiskPaths[index]}");
    }

    /// <summary>
    /// Bound on retrying the open of a member whose host still publishes its load: a dead host's entry leaves the load
    /// table within <see cref="CloudOptions.LoadEntryTimeToLive"/>, so only a live host that keeps failing the call is
    /// waited for this long before its member is taken as missing.
    /// </summary>
    public static readonly TimeSpan OpenRetryBound = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Opens remote member <paramref name="index"/> of <paramref name="volume"/>, or null when it is gone or its host
    /// has no live silo (the volume then assembles without it: a host's loss is one member's).
    /// </summary>
    /// <remarks>
    /// A call that fails on the way (its silo's directory partition, or the host itself, just died and membership has
    /// not said so yet) is made again while the host still publishes its load, for at most
    /// <see cref="OpenRetryBound"/>: a live member taken as missing would make the volume degraded, or failed when
    /// other hosts are really gone, for a moment's failure of another silo.
    /// </remarks>
    public async ValueTask<IBlockDevice?> OpenRemoteAsync(
        VolumeInfo volume,
        int index,
        CancellationToken cancellationToken)
    {
        var host = volume.MemberHost(index)!;
        var deadline = DateTimeOffset.UtcNow + OpenRetryBound;
        var delay = SiloFailures.FirstRetryDelay;
        while (true)
        {
            if (ServingSilo(host) is not { } name) return null;
            try
            {
                return await OpenOnAsync(
                    host, grains.GetGrain<IHostDiskGrain>(name), volume.DiskPaths[index], null, cancellationToken);
            }
            catch (Exception ex) when (SiloFailures.IsSiloFailure(ex) && DateTimeOffset.UtcNow < deadline)
            {
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay = SiloFailures.NextDelay(delay);
            }
            catch (Exception ex) when (ex is CloudStorageException or OrleansException or TimeoutException)
            {
                return null;
            }
        }
    }

    /// <summary>The path for a new member <paramref name="relativePath"/> in a pool of <paramref name="host"/>.</summary>
    public async Task<string> PlaceAsync(string host, string relativePath, long sizeBytes) =>
        IsRemote(host)
            ? await ServerOf(host).PlaceAsync(relativePath, sizeBytes)
            : local.Place(relativePath, sizeBytes);

    /// <summary>Deletes a pool member of <paramref name="host"/> (this host's directly).</summary>
    public async Task DeleteAsync(string host, string path)
    {
        if (IsRemote(host)) await ServerOf(host).DeleteAsync(path);
        else await local.DeleteAsync(path);
    }

    private IHostDiskGrain ServerOf(string host) =>
        ServingSilo(host) is { } name
            ? grains.GetGrain<IHostDiskGrain>(name)
            : throw new CloudStorageException(
                $"no live silo serves the disks of host '{host}'; start a silo there (--host-name {host})");

    private async ValueTask<IBlockDevice?> OpenOnAsync(
        string host,
        IHostDiskGrain server,
        string path,
        long? sizeBytes,
        CancellationToken cancellationToken)
    {
        var disk = await server.OpenAsync(path, sizeBytes).WaitAsync(cancellationToken);
        if (disk is null) return null;
        var writer = silo.SiloAddress.ToParsableString();
        IRemoteDiskChannel channel = new GrainDiskChannel(server, path, writer);
        if (disk.StreamEndpoint.Length > 0
            && string.Equals(options.Value.DiskTransport, CloudOptions.StreamDiskTransport, StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                await stream.GetAsync(disk.StreamEndpoint, disk.StreamKey, writer).WaitAsync(cancellationToken);
                channel = new StreamDiskChannel(stream, disk.StreamEndpoint, disk.StreamKey, writer, path);
            }
            catch (DiskStreamBrokenException ex)
            {
                // The host's silo answered its grain call but its stream cannot be reached (a firewall, say): the
                // member is served all the same, by grain calls.
                LogStreamUnreachable(logger, host, ex.Message);
            }
        }
        return new RemoteBlockDevice(
            $"{host}:{path}",
            disk.CapacityBytes,
            disk.SectorSizeBytes,
            Math.Min(disk.MaxInFlightIo, MaxInFlightIoPerMember),
            channel);
    }

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "The disk stream of host {Host} cannot be used ({Reason}); its member goes by grain calls")]
    private static partial void LogStreamUnreachable(ILogger logger, string host, string reason);

    /// <summary>
    /// Opens a member through a given silo's disk service, for tests of the contract and of fencing: by grain calls, or
    /// over <paramref name="stream"/> when one is given (the serving silo must have a stream then).
    /// </summary>
    internal static async ValueTask<RemoteBlockDevice?> OpenThroughAsync(
        IGrainFactory grains,
        string servingSilo,
        string path,
        long? sizeBytes,
        string writer,
        DiskStreamClient? stream = null)
    {
        var server = grains.GetGrain<IHostDiskGrain>(servingSilo);
        var disk = await server.OpenAsync(path, sizeBytes);
        if (disk is null) return null;
        if (stream is not null && disk.StreamEndpoint.Length == 0)
            throw new InvalidOperationException($"silo {servingSilo} has no disk stream");
        return new RemoteBlockDevice(
            $"{servingSilo}:{path}",
            disk.CapacityBytes,
            disk.SectorSizeBytes,
            Math.Min(disk.MaxInFlightIo, MaxInFlightIoPerMember),
            stream is null
                ? new GrainDiskChannel(server, path, writer)
                : new StreamDiskChannel(stream, disk.StreamEndpoint, disk.StreamKey, writer, path));
    }
}
