using System.Buffers;
using System.Collections.Concurrent;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Volumes;
using Cloud.Storage.Devices;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Serialization.Buffers;

namespace Cloud.Grains.Disks;

/// <summary>
/// The server side of the disk service on one silo: opens this host's member files for the other silos and runs their
/// I/O, with a bound on what is in flight and fencing of writers the cluster has declared dead.
/// </summary>
/// <remarks>
/// It serves only files inside this host's disk pools, under its volumes directory (the default members it creates),
/// or recorded in the catalog as members on this host: a caller cannot make it open any other file. A failure comes
/// back as a <see cref="CloudStorageException"/> with the host's message, and the caller's device turns it into a
/// <see cref="BlockDeviceException"/>, so the volume fails the member on the evidence of the host that has it.
/// </remarks>
public sealed class DiskServer(
    DiskPools pools,
    CatalogStore store,
    IGrainFactory grains,
    IClusterMembershipService membership,
    IOptions<CloudOptions> options) : IAsyncDisposable
{
    /// <summary>The bound on I/Os this server runs at once for all callers; more wait their turn.</summary>
    public const int MaxInFlightIo = 64;

    /// <summary>The largest read or write one request moves.</summary>
    public const int MaxRequestBytes = 16 << 20;

    private readonly ConcurrentDictionary<string, FileBlockDevice> _open = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _inFlight = new(MaxInFlightIo, MaxInFlightIo);
    private readonly SemaphoreSlim _opening = new(1, 1);

    private string Host => options.Value.HostName;

    /// <summary>
    /// Raised for each write or flush request this server takes, whichever transport brought it: its kind
    /// (<c>Write</c>, <c>WriteDurable</c>, <c>Flush</c>) and offset. Tests count requests with it.
    /// </summary>
    internal event Action<string, long>? Served;

    /// <summary>Opens (or creates) a member file of this host; null when it is absent and no size is given.</summary>
    public async Task<ServedDisk?> OpenAsync(string path, long? createSizeBytes)
    {
        var full = await CheckServedAsync(path);
        await _opening.WaitAsync();
        try
        {
            if (!_open.TryGetValue(full, out var device))
            {
                if (!File.Exists(full) && !full.StartsWith("/dev/", StringComparison.Ordinal))
                {
                    if (createSizeBytes is not { } size) return null;
                    Directory.CreateDirectory(Path.GetDirectoryName(full)!);
                    device = Run(() => new FileBlockDevice(full, size), full, "create");
                }
                else
                {
                    device = Run(() => new FileBlockDevice(full), full, "open");
                }
                _open[full] = device;
            }
            if (createSizeBytes is { } wanted && device.CapacityBytes != wanted)
                throw new CloudStorageException(
                    $"host '{Host}': {full} holds {device.CapacityBytes} bytes, not the {wanted} asked for");
            return new ServedDisk(device.CapacityBytes, device.SectorSizeBytes, device.MaxInFlightIo);
        }
        finally
        {
            _opening.Release();
        }
    }

    /// <summary>Reads from an open member into a new array: the reply's payload, which Orleans sends after return.</summary>
    public async Task<byte[]> ReadAsync(string path, long offsetBytes, int lengthBytes)
    {
        CheckLength(lengthBytes);
        var device = await DeviceAsync(path);
        var data = GC.AllocateUninitializedArray<byte>(lengthBytes);
        await _inFlight.WaitAsync();
        try
        {
            await Guard(() => device.ReadAsync(offsetBytes, data), device.Name, "read", offsetBytes);
        }
        finally
        {
            _inFlight.Release();
        }
        return data;
    }

    /// <summary>Writes to an open member for <paramref name="writer"/>, unless that silo is fenced.</summary>
    public Task WriteAsync(string path, long offsetBytes, byte[] data, string writer) =>
        WriteFromAsync(path, offsetBytes, data, ParseWriter(writer, path), durable: false).AsTask();

    /// <summary>
    /// Reads from an open member into a pooled buffer, the reply's payload: Orleans' serializer returns its segments to
    /// the pool once the reply is sent. The read goes through a pooled staging array (one copy into the segments), so
    /// that nothing of the request's size is allocated.
    /// </summary>
    public async Task<PooledBuffer> ReadPooledAsync(string path, long offsetBytes, int lengthBytes)
    {
        CheckLength(lengthBytes);
        var device = await DeviceAsync(path);
        var staging = ArrayPool<byte>.Shared.Rent(lengthBytes);
        try
        {
            await _inFlight.WaitAsync();
            try
            {
                await Guard(() => device.ReadAsync(offsetBytes, staging.AsMemory(0, lengthBytes)), device.Name, "read", offsetBytes);
            }
            finally
            {
                _inFlight.Release();
            }
            var reply = new PooledBuffer();
            reply.Write(staging.AsSpan(0, lengthBytes));
            return reply;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(staging);
        }
    }

    /// <summary>
    /// Writes a pooled payload to an open member for <paramref name="writer"/>, unless that silo is fenced, and
    /// disposes the payload. A payload of another length than the caller sent is refused before anything is written.
    /// With <paramref name="durable"/>, returns only once the file is flushed after the write (a durable volume's
    /// write, which would otherwise send its flush as a request of its own).
    /// </summary>
    public async Task WritePooledAsync(
        string path, long offsetBytes, int lengthBytes, PooledBuffer data, string writer, bool durable = false)
    {
        try
        {
            CheckLength(lengthBytes);
            Served?.Invoke(durable ? "WriteDurable" : "Write", offsetBytes);
            if (data.Length != lengthBytes)
                throw new CloudStorageException(
                    $"host '{Host}': a {lengthBytes}-byte write at {offsetBytes} arrived with {data.Length} bytes; nothing written");
            var device = await DeviceAsync(path);
            CheckWriter(writer, device.Name);
            var staging = ArrayPool<byte>.Shared.Rent(lengthBytes);
            try
            {
                data.CopyTo(staging.AsSpan(0, lengthBytes));
                await _inFlight.WaitAsync();
                try
                {
                    await Guard(() => device.WriteAsync(offsetBytes, staging.AsMemory(0, lengthBytes)), device.Name, "write", offsetBytes);
                }
                finally
                {
                    _inFlight.Release();
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(staging);
            }
            if (durable) await Guard(() => device.FlushAsync(), device.Name, "flush", offsetBytes);
        }
        finally
        {
            data.Dispose();
        }
    }

    /// <summary>
    /// Reads from an open member into <paramref name="destination"/>: the disk stream's read, whose reply is sent from
    /// the caller's buffer. Completes synchronously when the member is open and the read is small enough to run inline.
    /// </summary>
    internal async ValueTask ReadIntoAsync(string path, long offsetBytes, Memory<byte> destination)
    {
        CheckLength(destination.Length);
        var device = await DeviceAsync(path);
        await _inFlight.WaitAsync();
        try
        {
            await Guard(() => device.ReadAsync(offsetBytes, destination), device.Name, "read", offsetBytes);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <summary>
    /// Reads two ranges of an open member, one request (the disk stream's split read: a chunk's rows and its metadata
    /// sector); see <see cref="ReadIntoAsync"/>.
    /// </summary>
    internal async ValueTask ReadSplitIntoAsync(
        string path, long offsetBytes, Memory<byte> first, long secondOffsetBytes, Memory<byte> second)
    {
        CheckLength(first.Length + second.Length);
        var device = await DeviceAsync(path);
        await _inFlight.WaitAsync();
        try
        {
            await Guard(() => device.ReadAsync(offsetBytes, first), device.Name, "read", offsetBytes);
            await Guard(() => device.ReadAsync(secondOffsetBytes, second), device.Name, "read", secondOffsetBytes);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <summary>
    /// Writes two ranges of an open member for <paramref name="writer"/>, one request (the disk stream's split write);
    /// otherwise as <see cref="WriteFromAsync"/>.
    /// </summary>
    internal async ValueTask WriteSplitFromAsync(
        string path,
        long offsetBytes,
        ReadOnlyMemory<byte> first,
        long secondOffsetBytes,
        ReadOnlyMemory<byte> second,
        SiloAddress writer)
    {
        CheckLength(first.Length + second.Length);
        Served?.Invoke("WriteSplit", offsetBytes);
        var device = await DeviceAsync(path);
        CheckWriter(writer, device.Name);
        await _inFlight.WaitAsync();
        try
        {
            await Guard(() => device.WriteAsync(offsetBytes, first), device.Name, "write", offsetBytes);
            await Guard(() => device.WriteAsync(secondOffsetBytes, second), device.Name, "write", secondOffsetBytes);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <summary>
    /// Writes <paramref name="data"/> to an open member for <paramref name="writer"/> (the disk stream's write), unless
    /// that silo is fenced; with <paramref name="durable"/>, completes once the file is flushed after the write.
    /// </summary>
    /// <remarks>
    /// With <paramref name="commitLater"/> a durable write returns once written, and the caller makes it durable with
    /// <see cref="FlushNow"/> before it answers.
    /// </remarks>
    internal async ValueTask WriteFromAsync(
        string path, long offsetBytes, ReadOnlyMemory<byte> data, SiloAddress writer, bool durable, bool commitLater = false)
    {
        CheckLength(data.Length);
        Served?.Invoke(durable ? "WriteDurable" : "Write", offsetBytes);
        var device = await DeviceAsync(path);
        CheckWriter(writer, device.Name);
        await _inFlight.WaitAsync();
        try
        {
            await Guard(() => device.WriteAsync(offsetBytes, data), device.Name, "write", offsetBytes);
        }
        finally
        {
            _inFlight.Release();
        }
        if (durable && !commitLater) await Guard(() => device.FlushAsync(), device.Name, "flush", offsetBytes);
    }

    /// <summary>Flushes issued to an open member since it was opened here (for tests and metrics); 0 when not open.</summary>
    internal long FlushesOf(string path) =>
        _open.TryGetValue(Path.GetFullPath(path), out var device) ? device.FlushesIssued : 0;

    /// <summary>
    /// Flushes an open member on the calling thread, blocking it (the disk stream's group commit of the durable writes
    /// one connection has read).
    /// </summary>
    internal void FlushNow(string path)
    {
        if (!_open.TryGetValue(Path.GetFullPath(path), out var device))
            throw new CloudStorageException($"host '{Host}': member {path} is not open");
        try
        {
            device.Flush();
        }
        catch (IOException ex)
        {
            throw new CloudStorageException($"host '{Host}': {device.Name}: flush failed: {ex.Message}");
        }
    }

    /// <summary>Whether the member is open here, so that <see cref="FlushRequestNow"/> can flush it at once.</summary>
    internal bool IsOpen(string path) => _open.ContainsKey(Path.GetFullPath(path));

    /// <summary>A caller's flush of an open member, run on the calling thread (the disk stream's flusher).</summary>
    internal void FlushRequestNow(string path)
    {
        Served?.Invoke("Flush", 0);
        FlushNow(path);
    }

    /// <summary>Flushes an open member.</summary>
    public async Task FlushAsync(string path)
    {
        Served?.Invoke("Flush", 0);
        var device = await DeviceAsync(path);
        await Guard(() => device.FlushAsync(), device.Name, "flush", 0);
    }

    /// <summary>The path for a new member in this host's pool with the most room.</summary>
    public string Place(string relativePath, long sizeBytes) => pools.Place(relativePath, sizeBytes);

    /// <summary>Closes and deletes a member file in this host's pools, and its directory once empty.</summary>
    public async Task DeleteAsync(string path)
    {
        var full = Path.GetFullPath(path);
        if (!pools.Contains(full))
            throw new CloudRequestException(
                $"host '{Host}' deletes only members in its disk pools ({string.Join(", ", pools.Directories)}); '{path}' is not");
        if (_open.TryRemove(full, out var device)) await device.DisposeAsync();
        File.Delete(full);
        var directory = Path.GetDirectoryName(full);
        if (directory is not null
            && pools.Contains(directory)
            && Directory.Exists(directory)
            && !Directory.EnumerateFileSystemEntries(directory).Any())
            Directory.Delete(directory);
    }

    /// <summary>
    /// Refuses a write from a silo the membership has declared dead, or from an older generation of a silo that has
    /// restarted: a late write of a writer whose locks the cluster has already released must not reach the disk.
    /// </summary>
    private void CheckWriter(string writer, string device) => CheckWriter(ParseWriter(writer, device), device);

    private SiloAddress ParseWriter(string writer, string device)
    {
        try
        {
            return SiloAddress.FromParsableString(writer);
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException or IndexOutOfRangeException)
        {
            throw new CloudStorageException($"host '{Host}': {device}: writer '{writer}' is not a silo address");
        }
    }

    /// <inheritdoc cref="CheckWriter(string, string)"/>
    private void CheckWriter(SiloAddress address, string device)
    {
        var snapshot = membership.CurrentSnapshot;
        if (snapshot.GetSiloStatus(address) == SiloStatus.Dead)
            throw new CloudStorageException(
                $"host '{Host}': {device}: write refused, writer silo {address} is declared dead by the membership (fenced)");
        foreach (var member in snapshot.Members.Values)
        {
            if (member.SiloAddress.Endpoint.Equals(address.Endpoint)
                && member.SiloAddress.Generation > address.Generation)
                throw new CloudStorageException(
                    $"host '{Host}': {device}: write refused, writer silo {address} was succeeded by {member.SiloAddress} (fenced)");
        }
    }

    private async Task<FileBlockDevice> DeviceAsync(string path)
    {
        var full = Path.GetFullPath(path);
        if (_open.TryGetValue(full, out var device)) return device;
        // Not opened here since this silo started: open it again, with the same checks.
        if (await OpenAsync(full, null) is null)
            throw new CloudStorageException($"host '{Host}': member {full} does not exist");
        return _open[full];
    }

    /// <summary>The full path of a file this host serves; refuses any other.</summary>
    private async Task<string> CheckServedAsync(string path)
    {
        if (string.IsNullOrWhiteSpace(path) || !Path.IsPathFullyQualified(path))
            throw new CloudRequestException($"disk path '{path}' is not allowed; give a full path");
        var full = Path.GetFullPath(path);
        if (pools.Contains(full) || full.StartsWith(store.VolumesDirectory + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            return full;
        // A file the operator named with --disk on this host: served only when the catalog records it as this host's.
        var volumes = await grains.GetGrain<IVolumeCatalogGrain>(0).ListAsync();
        foreach (var v in volumes)
        {
            for (var i = 0; i < v.DiskCount; i++)
                if (v.DiskPaths[i] == full && v.MemberHost(i) == Host) return full;
        }
        throw new CloudRequestException(
            $"host '{Host}' does not serve '{path}': it serves its disk pools ({string.Join(", ", pools.Directories)}), {store.VolumesDirectory} and recorded members of this host");
    }

    private static void CheckLength(int lengthBytes)
    {
        if (lengthBytes < 0 || lengthBytes > MaxRequestBytes)
            throw new CloudRequestException(
                $"a disk-service request moves {lengthBytes} bytes; allowed 0-{MaxRequestBytes}");
    }

    private FileBlockDevice Run(Func<FileBlockDevice> open, string path, string what)
    {
        try
        {
            return open();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new CloudStorageException($"host '{Host}': cannot {what} {path}: {ex.Message}");
        }
    }

    private async Task Guard(Func<ValueTask> operation, string device, string what, long offsetBytes)
    {
        try
        {
            await operation();
        }
        catch (ArgumentOutOfRangeException ex)
        {
            throw new CloudRequestException($"host '{Host}': {what} at {offsetBytes}: {ex.Message}");
        }
        catch (IOException ex)
        {
            throw new CloudStorageException($"host '{Host}': {device}: {what} at {offsetBytes} failed: {ex.Message}");
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var device in _open.Values) await device.DisposeAsync();
        _open.Clear();
        _inFlight.Dispose();
        _opening.Dispose();
    }
}
