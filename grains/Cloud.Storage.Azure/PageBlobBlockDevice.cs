using System.Collections.Concurrent;
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;
using Cloud.Storage.Devices;

namespace Cloud.Storage.Azure;

/// <summary>
/// A disk stored in an Azure page blob, the way Azure's own managed disks are stored, so that every
/// silo that can reach the storage account can reach the disk.
/// </summary>
/// <remarks>
/// <para><b>Sectors.</b> Page blobs are arrays of 512-byte pages, but the device exposes
/// <see cref="SectorSizeBytes"/> = 4096: the engine works in 4096-byte blocks, every member of a
/// volume then has the same granule whether it is a file on a 4Kn NVMe disk or a blob, and no I/O
/// ever covers part of a block, so a block and its checksum always travel in one request. Every 4096-byte
/// sector is eight whole pages, so 512-byte page alignment holds by construction.</para>
/// <para><b>Durability.</b> A Put Page is durable in the storage service when it is acknowledged, so
/// <see cref="FlushAsync"/> has nothing to force: it only waits for writes that are still in flight
/// when it is called.</para>
/// <para><b>Sharing.</b> Several silos open the same blob at once. The device takes no lease (a lease
/// would lock the other silos out); the partition-lock grains already serialise writers of a stripe.
/// Where a write must not race with another process (the superblock), use
/// <see cref="ReadWithETagAsync"/> and <see cref="WriteIfMatchAsync"/> (an optimistic If-Match write).</para>
/// <para><b>Faults.</b> Throttling (503, 500, 429), timeouts and dropped connections are retried by the
/// SDK with the policy in <see cref="PageBlobDeviceOptions"/>; they never surface as data errors. A blob
/// or container that is gone, or a service that stays unreachable after the retries, surfaces as
/// <see cref="BlockDeviceException"/>, so the volume fails this member and runs degraded.</para>
/// </remarks>
public sealed class PageBlobBlockDevice : IConditionalBlockDevice
{
    /// <summary>The sector size the device exposes (see the remarks on why it is not the 512-byte page).</summary>
    public const int SectorBytes = 4096;

    /// <summary>The page size of a page blob: sizes and Put Page ranges are multiples of it.</summary>
    public const int PageBytes = 512;

    /// <summary>The largest range one Put Page request may carry (4 MiB); larger writes are split.</summary>
    public const int MaxPutPageBytes = 4 * 1024 * 1024;

    /// <summary>
    /// The largest range one Get Blob request of this device reads; larger reads are split so their parts run in
    /// parallel.
    /// </summary>
    public const int MaxGetRangeBytes = 4 * 1024 * 1024;

    /// <summary>The largest page blob Azure supports (8 TiB).</summary>
    public const long MaxCapacityBytes = 8L * 1024 * 1024 * 1024 * 1024;

    /// <summary>
    /// How many times one read restarts when the SDK's resumed download is refused with 412. The SDK
    /// resumes a download cut off mid-body with If-Match on the blob's ETag, and any write anywhere in the
    /// blob by another silo changes that ETag; the bytes this read wants are still valid, so read again.
    /// </summary>
    public const int MaxReadRestarts = 3;

    private readonly PageBlobClient _blob;
    private readonly SemaphoreSlim _inFlight;
    private readonly ConcurrentDictionary<long, Task> _pendingWrites = new();
    private long _nextWriteId;
    private int _disposed;

    private PageBlobBlockDevice(PageBlobClient blob, long capacityBytes, int maxInFlightIo)
    {
        _blob = blob;
        CapacityBytes = capacityBytes;
        MaxInFlightIo = maxInFlightIo;
        _inFlight = new SemaphoreSlim(maxInFlightIo, maxInFlightIo);

        // The URI without its query, so that a SAS token never reaches a log line.
        Name = blob.Uri.GetLeftPart(UriPartial.Path);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int SectorSizeBytes => SectorBytes;

    /// <inheritdoc />
    public long CapacityBytes { get; }

    /// <inheritdoc />
    public int MaxInFlightIo { get; }

    /// <summary>The container that holds the blob.</summary>
    public string ContainerName => _blob.BlobContainerName;

    /// <summary>The blob's name inside its container.</summary>
    public string BlobName => _blob.Name;

    /// <summary>
    /// Opens a device from a connection string (see <see cref="PageBlobConnection.FromConnectionString"/>).
    /// </summary>
    public static ValueTask<PageBlobBlockDevice> OpenAsync(
        string connectionString, string container, string blob, long? capacityBytes = null,
        PageBlobDeviceOptions? options = null, CancellationToken cancellationToken = default) =>
        PageBlobConnection.FromConnectionString(connectionString, options)
            .OpenDeviceAsync(container, blob, capacityBytes, cancellationToken);

    /// <summary>
    /// Opens a device from a service URI and an Entra ID credential (see <see cref="PageBlobConnection.FromUri"/>).
    /// </summary>
    public static ValueTask<PageBlobBlockDevice> OpenAsync(
        Uri serviceUri, global::Azure.Core.TokenCredential credential, string container, string blob,
        long? capacityBytes = null,
        PageBlobDeviceOptions? options = null, CancellationToken cancellationToken = default) =>
        PageBlobConnection.FromUri(serviceUri, credential, options)
            .OpenDeviceAsync(container, blob, capacityBytes, cancellationToken);

    /// <summary>
    /// Opens <paramref name="blob"/> as a block device. With <paramref name="capacityBytes"/> (a positive
    /// multiple of 4096, at most 8 TiB) the page blob is created at that size when absent and must have that
    /// size when present; without it the blob must exist and its size, rounded down to 4096, is the capacity.
    /// </summary>
    /// <param name="blob">The blob client; its pipeline's retry policy is the one I/O gets, so build it with
    /// <see cref="PageBlobDeviceOptions.ToBlobClientOptions"/> (as <see cref="PageBlobConnection"/> does).</param>
    /// <param name="capacityBytes">The size to create, or null to open an existing blob.</param>
    /// <param name="options">Device settings (only <see cref="PageBlobDeviceOptions.MaxInFlightIo"/> applies
    /// here).</param>
    /// <param name="createContainer">When set, the container is created first if it is missing.</param>
    /// <param name="cancellationToken">Cancels the open.</param>
    /// <exception cref="ArgumentException">A bad capacity, a blob that is not a page blob, or a size that differs from
    /// <paramref name="capacityBytes"/>.</exception>
    /// <exception cref="BlockDeviceException">The blob is missing (and no capacity was given) or the service cannot be
    /// reached.</exception>
    public static async ValueTask<PageBlobBlockDevice> OpenAsync(
        PageBlobClient blob, long? capacityBytes, PageBlobDeviceOptions? options = null,
        BlobContainerClient? createContainer = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(blob);
        options ??= new PageBlobDeviceOptions();
        options.Validate();
        if (capacityBytes is { } requested
            && (requested <= 0 || requested % SectorBytes != 0 || requested > MaxCapacityBytes))
        {
            throw new ArgumentOutOfRangeException(
                nameof(capacityBytes), requested, $"capacityBytes must be a positive multiple of {SectorBytes} of at most {MaxCapacityBytes} (8 TiB).");
        }

        var name = blob.Uri.GetLeftPart(UriPartial.Path);
        BlobProperties properties;
        try
        {
            if (createContainer is not null)
            {
                await createContainer.CreateIfNotExistsAsync(cancellationToken: cancellationToken)
                    .ConfigureAwait(false);
            }

            if (capacityBytes is { } size)
            {
                // If-None-Match: * underneath, so an existing blob (another silo's, or our earlier run's) is never
                // overwritten.
                await blob.CreateIfNotExistsAsync(
                    size, new PageBlobCreateOptions(), cancellationToken).ConfigureAwait(false);
            }

            properties = (await blob.GetPropertiesAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
                .Value;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            throw new BlockDeviceException(
                name, $"the page blob does not exist ({e.ErrorCode}); give a capacity to create it.", e);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw new BlockDeviceException(name, $"cannot open the page blob: {e.Message}", e);
        }

        if (properties.BlobType != BlobType.Page)
        {
            throw new ArgumentException(
                $"{name} is a {properties.BlobType} blob; a disk must be a page blob.", nameof(blob));
        }

        if (capacityBytes is { } expected && properties.ContentLength != expected)
        {
            throw new ArgumentException(
                $"{name} exists with {properties.ContentLength} bytes, but {expected} bytes were requested; open it without a capacity or use another blob.",
                nameof(capacityBytes));
        }

        var capacity = properties.ContentLength / SectorBytes * SectorBytes;
        if (capacity == 0)
        {
            throw new ArgumentException(
                $"{name} holds {properties.ContentLength} bytes, less than one {SectorBytes}-byte sector.",
                nameof(blob));
        }

        return new PageBlobBlockDevice(blob, capacity, options.MaxInFlightIo);
    }

    /// <inheritdoc />
    public ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        CheckRange(offsetBytes, destination.Length, nameof(destination));
        ThrowIfDisposed();
        if (destination.Length == 0)
        {
            return ValueTask.CompletedTask;
        }

        if (destination.Length <= MaxGetRangeBytes)
        {
            return new ValueTask(ReadRangeAsync(offsetBytes, destination, cancellationToken));
        }

        var parts = (destination.Length + MaxGetRangeBytes - 1) / MaxGetRangeBytes;
        var tasks = new Task[parts];
        for (var i = 0; i < parts; i++)
        {
            var start = i * MaxGetRangeBytes;
            tasks[i] = ReadRangeAsync(
                offsetBytes + start,
                destination.Slice(start, Math.Min(MaxGetRangeBytes, destination.Length - start)),
                cancellationToken);
        }

        return new ValueTask(WhenAllFirstErrorAsync(tasks));
    }

    /// <inheritdoc />
    public ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        CancellationToken cancellationToken = default)
    {
        CheckRange(offsetBytes, source.Length, nameof(source));
        ThrowIfDisposed();
        if (source.Length == 0)
        {
            return ValueTask.CompletedTask;
        }

        Task write;
        if (source.Length <= MaxPutPageBytes)
        {
            write = WriteRangeAsync(offsetBytes, source, cancellationToken);
        }
        else
        {
            var parts = (source.Length + MaxPutPageBytes - 1) / MaxPutPageBytes;
            var tasks = new Task[parts];
            for (var i = 0; i < parts; i++)
            {
                var start = i * MaxPutPageBytes;
                tasks[i] = WriteRangeAsync(
                    offsetBytes + start,
                    source.Slice(start, Math.Min(MaxPutPageBytes, source.Length - start)),
                    cancellationToken);
            }

            write = WhenAllFirstErrorAsync(tasks);
        }

        return write.IsCompleted ? new ValueTask(write) : new ValueTask(TrackWriteAsync(write));
    }

    /// <summary>
    /// Waits for the writes in flight when it is called; nothing else is needed, because a page write is
    /// durable once the service acknowledges it. Failures of those writes are reported to their own callers.
    /// </summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        Task[] pending = [.. _pendingWrites.Values];
        if (pending.Length == 0)
        {
            return;
        }

        try
        {
            await Task.WhenAll(pending).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            // Each failed write already threw to the caller that issued it; the flush itself succeeded.
        }
    }

    /// <summary>
    /// Reads a range of at most <see cref="MaxGetRangeBytes"/> in one request and returns the blob's ETag at
    /// that moment, for a later <see cref="WriteIfMatchAsync"/>.
    /// </summary>
    public async ValueTask<ETag> ReadWithETagAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        CheckRange(offsetBytes, destination.Length, nameof(destination));
        CheckSingleRequest(destination.Length, MaxGetRangeBytes, nameof(destination));
        if (destination.Length == 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(destination), 0, "A read with ETag needs at least one sector.");
        }

        ThrowIfDisposed();
        return await ReadRangeAsync(offsetBytes, destination, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The blob's current ETag. It changes on every write anywhere in the blob, by any silo.</summary>
    public async ValueTask<ETag> GetETagAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return (await _blob.GetPropertiesAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
                .Value.ETag;
        }
        catch (Exception e) when (IsDeviceFailure(e, cancellationToken))
        {
            throw Failure("reading the properties", 0, 0, e);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    /// <summary>
    /// Writes a range of at most <see cref="MaxPutPageBytes"/> in one Put Page request only if the blob's ETag
    /// is still <paramref name="ifMatch"/>, i.e. no process wrote anything to the blob since that ETag was read.
    /// This is the optimistic update for structures several silos may rewrite (the superblock): on a conflict,
    /// read again, merge and retry. The ETag covers the whole blob, so under heavy data traffic prefer to
    /// update such structures while the volume is quiet, or retry with a bound.
    /// </summary>
    /// <returns>
    /// Whether the data is in place, and the blob's ETag after the write (or, on a conflict, the current one).
    /// </returns>
    /// <remarks>
    /// If an earlier try of this same write reached the blob but its acknowledgement was lost, the SDK's
    /// retry meets a changed ETag; the device then reads the range back, and when it already holds exactly
    /// <paramref name="source"/> the write is reported as done.
    /// </remarks>
    public async ValueTask<ConditionalWriteResult> WriteIfMatchAsync(
        long offsetBytes, ReadOnlyMemory<byte> source, ETag ifMatch, CancellationToken cancellationToken = default)
    {
        CheckRange(offsetBytes, source.Length, nameof(source));
        CheckSingleRequest(source.Length, MaxPutPageBytes, nameof(source));
        if (source.Length == 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(source), 0, "A conditional write needs at least one sector of data.");
        }

        ThrowIfDisposed();
        var conditions = new PageBlobRequestConditions { IfMatch = ifMatch };
        try
        {
            ETag written = await PutPagesAsync(
                offsetBytes, source, conditions, cancellationToken).ConfigureAwait(false);
            return new ConditionalWriteResult(true, written);
        }
        catch (BlockDeviceException e) when (e.InnerException is RequestFailedException { Status: 412 })
        {
            var current = new byte[source.Length];
            ETag currentETag = await ReadRangeAsync(offsetBytes, current, cancellationToken).ConfigureAwait(false);
            return new ConditionalWriteResult(current.AsSpan().SequenceEqual(source.Span), currentETag);
        }
    }

    /// <inheritdoc />
    /// <remarks>The version is the blob's ETag (see <see cref="ReadWithETagAsync"/>).</remarks>
    async ValueTask<string> IConditionalBlockDevice.ReadVersionedAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken) =>
        (await ReadWithETagAsync(offsetBytes, destination, cancellationToken).ConfigureAwait(false)).ToString();

    /// <inheritdoc />
    /// <remarks>An If-Match Put Page on the blob's ETag (see <see cref="WriteIfMatchAsync"/>).</remarks>
    async ValueTask<bool> IConditionalBlockDevice.WriteIfVersionAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        string expectedVersion,
        CancellationToken cancellationToken) =>
        (await WriteIfMatchAsync(offsetBytes, source, new ETag(expectedVersion), cancellationToken)
            .ConfigureAwait(false)).Written;

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await Task.WhenAll([.. _pendingWrites.Values]).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Failed writes were reported to their callers; disposal only waits for them to settle.
        }
    }

    private async Task TrackWriteAsync(Task write)
    {
        var id = Interlocked.Increment(ref _nextWriteId);
        _pendingWrites[id] = write;
        try
        {
            await write.ConfigureAwait(false);
        }
        finally
        {
            _pendingWrites.TryRemove(id, out _);
        }
    }

    private async Task<ETag> ReadRangeAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var options = new BlobDownloadOptions { Range = new HttpRange(offsetBytes, destination.Length) };
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    using BlobDownloadStreamingResult result =
                        (await _blob.DownloadStreamingAsync(options, cancellationToken).ConfigureAwait(false))
                        .Value;
                    if (result.Details.ContentLength != destination.Length)
                    {
                        throw new BlockDeviceException(
                            Name, $"asked for {destination.Length} bytes at {offsetBytes} and the service answered with {result.Details.ContentLength}.");
                    }

                    // Straight from the response body into the caller's buffer: no intermediate copy.
                    await result.Content.ReadExactlyAsync(destination, cancellationToken).ConfigureAwait(false);
                    return result.Details.ETag;
                }
                catch (RequestFailedException e) when (e.Status == 412 && attempt < MaxReadRestarts)
                {
                    // A resumed download met another silo's write elsewhere in the blob: read the range again.
                }
            }
        }
        catch (Exception e) when (e is not BlockDeviceException && IsDeviceFailure(e, cancellationToken))
        {
            throw Failure("read", offsetBytes, destination.Length, e);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    private Task WriteRangeAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken) =>
        PutPagesAsync(offsetBytes, source, conditions: null, cancellationToken);

    private async Task<ETag> PutPagesAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        PageBlobRequestConditions? conditions,
        CancellationToken cancellationToken)
    {
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var content = new ReadOnlyMemoryStream(source);
            var options = conditions is null ? null : new PageBlobUploadPagesOptions { Conditions = conditions };
            Response<PageInfo> response = await _blob.UploadPagesAsync(
                content, offsetBytes, options, cancellationToken).ConfigureAwait(false);
            return response.Value.ETag;
        }
        catch (Exception e) when (IsDeviceFailure(e, cancellationToken))
        {
            throw Failure("write", offsetBytes, source.Length, e);
        }
        finally
        {
            _inFlight.Release();
        }
    }

    private BlockDeviceException Failure(string operation, long offsetBytes, int lengthBytes, Exception e)
    {
        var what = $"{operation} of {lengthBytes} bytes at offset {offsetBytes}";
        return e switch
        {
            RequestFailedException { Status: 404 } r => new BlockDeviceException(
                Name, $"{what} failed: the page blob or its container is gone ({r.ErrorCode}).", e),
            RequestFailedException r => new BlockDeviceException(
                Name, $"{what} failed with HTTP {r.Status} ({r.ErrorCode}) after the SDK's retries.", e),
            _ => new BlockDeviceException(Name, $"{what} failed after the SDK's retries: {e.Message}", e),
        };
    }

    // A cancellation the caller asked for stays an OperationCanceledException; everything else
    // (HTTP errors after retries, network timeouts, unreachable hosts) fails the device.
    private static bool IsDeviceFailure(Exception e, CancellationToken cancellationToken) =>
        !(e is OperationCanceledException && cancellationToken.IsCancellationRequested);

    private void CheckRange(long offsetBytes, int lengthBytes, string bufferName)
    {
        if (offsetBytes < 0 || offsetBytes % SectorBytes != 0 || offsetBytes > CapacityBytes)
        {
            throw new ArgumentOutOfRangeException(
                nameof(offsetBytes), offsetBytes, $"{Name}: offsetBytes must be a multiple of {SectorBytes} from 0 to the capacity {CapacityBytes}.");
        }

        if (lengthBytes % SectorBytes != 0 || lengthBytes > CapacityBytes - offsetBytes)
        {
            throw new ArgumentOutOfRangeException(
                bufferName, lengthBytes, $"{Name}: the length must be a multiple of {SectorBytes} and end within the capacity {CapacityBytes} (offset {offsetBytes}).");
        }
    }

    private static void CheckSingleRequest(int lengthBytes, int maxBytes, string bufferName)
    {
        if (lengthBytes > maxBytes)
        {
            throw new ArgumentOutOfRangeException(
                bufferName, lengthBytes, $"A conditional operation is one request of at most {maxBytes} bytes.");
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    // Task.WhenAll would wrap several failures in an AggregateException when awaited through a Task;
    // awaiting it surfaces the first one, which is a BlockDeviceException or the caller's cancellation.
    private static async Task WhenAllFirstErrorAsync(Task[] tasks) => await Task.WhenAll(tasks).ConfigureAwait(false);
}

/// <summary>The outcome of <see cref="PageBlobBlockDevice.WriteIfMatchAsync"/>.</summary>
/// <param name="Written">True when the range now holds the new data; false when another write came first and nothing
/// was written.</param>
/// <param name="ETag">The blob's ETag after the write, or the current one after a conflict.</param>
public readonly record struct ConditionalWriteResult(bool Written, ETag ETag);
