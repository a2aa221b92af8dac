using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Cloud.Storage.Devices;

/// <summary>
/// A device on a regular file or a block-device path (e.g. <c>/dev/nvme0n1</c>, <c>/dev/loop3</c>),
/// through <see cref="RandomAccess"/> on a <see cref="SafeFileHandle"/>. A regular file is created
/// if absent and preallocated to the requested capacity; a block device keeps its own size.
/// <see cref="FlushAsync"/> is <c>fdatasync</c>, shared by concurrent callers. The file is opened shared, because several processes
/// of a cluster open the same members (each writing only the stripes it holds locks for).
/// </summary>
public sealed class FileBlockDevice : IVectoredBlockDevice
{
    /// <summary>The default bound on concurrent operations.</summary>
    public const int DefaultMaxInFlightIo = 32;

    /// <summary>The sector size assumed for regular files.</summary>
    public const int DefaultFileSectorSizeBytes = 512;

    private readonly SafeFileHandle _handle;
    private readonly SemaphoreSlim _inFlight;

    private readonly FlushCoalescer _flush;

    /// <param name="path">A regular file (created when missing) or a block device.</param>
    /// <param name="capacityBytes">
    /// For a regular file: its size; 0 keeps the current size (which must then be non-zero). A larger
    /// size than the file has grows and preallocates it. For a block device: 0 or at most its size
    /// (a smaller value uses a prefix).
    /// </param>
    /// <param name="maxInFlightIo">The bound on concurrent operations, 1..4096.</param>
    public FileBlockDevice(string path, long capacityBytes = 0, int maxInFlightIo = DefaultMaxInFlightIo)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (capacityBytes < 0)
            throw new ArgumentOutOfRangeException(
                nameof(capacityBytes), capacityBytes, $"{path}: must be 0 (existing size) or positive.");
        Name = path;
        var exists = File.Exists(path) || path.StartsWith("/dev/", StringComparison.Ordinal);
        var existingLength = exists ? new FileInfo(path).Length : 0;
        _handle = File.OpenHandle(path, exists ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite,
            FileShare.ReadWrite | FileShare.Delete,
            FileOptions.Asynchronous, preallocationSize: exists ? 0 : capacityBytes);
        try
        {
            if (TryGetBlockDeviceSize(_handle, out var deviceBytes, out var logicalSector))
            {
                IsBlockDevice = true;
                SectorSizeBytes = logicalSector;
                if (capacityBytes > deviceBytes)
                    throw new ArgumentOutOfRangeException(
                        nameof(capacityBytes),
                        capacityBytes,
                        $"{path}: the block device holds only {deviceBytes} bytes.");
                CapacityBytes = capacityBytes == 0 ? deviceBytes - deviceBytes % logicalSector : capacityBytes;
            }
            else
            {
                SectorSizeBytes = DefaultFileSectorSizeBytes;
                var length = RandomAccess.GetLength(_handle);
                if (capacityBytes == 0)
                {
                    if (length == 0)
                        throw new ArgumentOutOfRangeException(
                            nameof(capacityBytes), capacityBytes, $"{path}: the file is empty; give a capacity.");
                    capacityBytes = length - length % SectorSizeBytes;
                }
                if (length < capacityBytes)
                {
                    if (existingLength > 0 || length > 0) Preallocate(_handle, length, capacityBytes - length);
                    RandomAccess.SetLength(_handle, capacityBytes);
                }
                CapacityBytes = capacityBytes;
            }
            DeviceChecks.CheckGeometry(Name, CapacityBytes, SectorSizeBytes, maxInFlightIo);
        }
        catch
        {
            _handle.Dispose();
            throw;
        }
        MaxInFlightIo = maxInFlightIo;
        _inFlight = new SemaphoreSlim(maxInFlightIo, maxInFlightIo);
        _flush = new FlushCoalescer(SyncData);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int SectorSizeBytes { get; }

    /// <inheritdoc />
    public long CapacityBytes { get; }

    /// <inheritdoc />
    public int MaxInFlightIo { get; }

    /// <summary>
    /// Reads up to this many bytes run on the caller's thread when an in-flight slot is free (0: never).
    /// Default <see cref="DefaultInlineIoMaxBytes"/>.
    /// </summary>
    public int InlineIoMaxBytes { get; init; } = DefaultInlineIoMaxBytes;

    /// <summary>
    /// The default for <see cref="InlineIoMaxBytes"/>: 128 KiB, so that a whole 64 KiB chunk read together with the
    /// metadata sector that follows it (one 68 KiB read) stays on the caller's thread too.
    /// </summary>
    public const int DefaultInlineIoMaxBytes = 128 * 1024;

    /// <summary>
    /// Writes up to this many bytes run on the caller's thread when an in-flight slot is free (0: never).
    /// Default <see cref="DefaultInlineWriteMaxBytes"/>.
    /// </summary>
    public int InlineWriteMaxBytes { get; init; } = DefaultInlineWriteMaxBytes;

    /// <summary>
    /// The default for <see cref="InlineWriteMaxBytes"/>: 2 MiB, room for the longest run write a member gets with
    /// 64 KiB chunks (16 stripes of a chunk and its metadata sector, 1,088 KiB). Larger than for reads because a
    /// buffered write only copies into the page cache, while a read that misses it waits for the disk and would hold
    /// the caller (an NBD connection's loop) for that long. Queued, each member's part of a 1 MiB sequential write
    /// cost two thread switches, and the five members' writes of one request ran on five threads that then contended
    /// for the member files' inode locks: sequential 1 MiB writes through NBD went from 1,262 and 1,417 to 1,606 and
    /// 1,543 per second inline (alternated pairs, same build otherwise).
    /// </summary>
    public const int DefaultInlineWriteMaxBytes = 2 * 1024 * 1024;

    /// <summary>True when the path is a block device rather than a regular file.</summary>
    public bool IsBlockDevice { get; }

    /// <inheritdoc />
    /// <remarks>
    /// On Linux, .NET runs every "asynchronous" file read as a blocking <c>pread</c> on a thread-pool thread and then
    /// schedules the continuation: two thread switches per I/O. A read of at most <see cref="InlineIoMaxBytes"/> that
    /// finds a free in-flight slot is therefore done on the caller's thread (the same blocking call, without the hops);
    /// larger reads, and reads that must wait for a slot, keep the asynchronous path.
    /// </remarks>
    public ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, destination.Length, nameof(destination));
        if (destination.Length > InlineIoMaxBytes || cancellationToken.IsCancellationRequested || !_inFlight.Wait(0))
            return ReadQueuedAsync(offsetBytes, destination, cancellationToken);
        try
        {
            ReadFully(destination.Span, offsetBytes);
            return ValueTask.CompletedTask;
        }
        catch (Exception e)
        {
            // As a faulted task, like the queued path: callers that start several I/Os before awaiting any rely on it.
            return ValueTask.FromException(Failure("read", destination.Length, offsetBytes, e));
        }
        finally { _inFlight.Release(); }
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with blocking reads; past the end of a regular file someone truncated,
    /// zeroes.
    /// </summary>
    private void ReadFully(Span<byte> destination, long offsetBytes)
    {
        while (!destination.IsEmpty)
        {
            var n = RandomAccess.Read(_handle, destination, offsetBytes);
            if (n == 0)
            {
                destination.Clear();
                return;
            }
            destination = destination[n..];
            offsetBytes += n;
        }
    }

    private static bool IsIoError(Exception e)
        => e is IOException or UnauthorizedAccessException && e is not BlockDeviceException;

    /// <summary>
    /// An I/O error as this device's <see cref="BlockDeviceException"/>, naming the operation; anything else as it is.
    /// </summary>
    private Exception Failure(string operation, int lengthBytes, long offsetBytes, Exception e) =>
        IsIoError(e)
            ? new BlockDeviceException(
                Name, $"{operation} of {lengthBytes} bytes at {offsetBytes} failed: {e.Message}", e)
            : e;

    private async ValueTask ReadQueuedAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken)
    {
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var done = 0;
            while (done < destination.Length)
            {
                var n = await RandomAccess.ReadAsync(
                    _handle, destination[done..], offsetBytes + done, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    // Past the end of a regular file someone truncated: unwritten space reads as zeroes.
                    destination.Span[done..].Clear();
                    break;
                }
                done += n;
            }
        }
        catch (Exception e) when (IsIoError(e))
        {
            throw Failure("read", destination.Length, offsetBytes, e);
        }
        finally { _inFlight.Release(); }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Writes of at most <see cref="InlineWriteMaxBytes"/> run on the caller's thread, as small reads do (see
    /// <see cref="ReadAsync"/>).
    /// </remarks>
    public ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        CancellationToken cancellationToken = default)
    {
        DeviceChecks.CheckIo(this, offsetBytes, source.Length, nameof(source));
        if (source.Length > InlineWriteMaxBytes || cancellationToken.IsCancellationRequested || !_inFlight.Wait(0))
            return WriteQueuedAsync(offsetBytes, source, cancellationToken);
        try
        {
            RandomAccess.Write(_handle, source.Span, offsetBytes);
            return ValueTask.CompletedTask;
        }
        catch (Exception e)
        {
            return ValueTask.FromException(Failure("write", source.Length, offsetBytes, e));
        }
        finally { _inFlight.Release(); }
    }

    private async ValueTask WriteQueuedAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        CancellationToken cancellationToken)
    {
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await RandomAccess.WriteAsync(_handle, source, offsetBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsIoError(e))
        {
            throw Failure("write", source.Length, offsetBytes, e);
        }
        finally { _inFlight.Release(); }
    }

    /// <inheritdoc />
    /// <remarks>
    /// One <c>preadv</c>; on the caller's thread under the same rule as <see cref="ReadAsync"/>, for the whole length.
    /// </remarks>
    public ValueTask ReadScatterAsync(
        long offsetBytes,
        IReadOnlyList<Memory<byte>> destinations,
        CancellationToken cancellationToken = default)
    {
        var total = DeviceChecks.CheckVector(
            this, offsetBytes, destinations, static m => m.Length, nameof(destinations));
        if (total > InlineIoMaxBytes || cancellationToken.IsCancellationRequested || !_inFlight.Wait(0))
            return ReadScatterQueuedAsync(offsetBytes, destinations, total, cancellationToken);
        try
        {
            var n = RandomAccess.Read(_handle, destinations, offsetBytes);
            if (n < total) FinishShortScatter(offsetBytes, destinations, n);
            return ValueTask.CompletedTask;
        }
        catch (Exception e)
        {
            return ValueTask.FromException(Failure("read", total, offsetBytes, e));
        }
        finally { _inFlight.Release(); }
    }

    private async ValueTask ReadScatterQueuedAsync(
        long offsetBytes,
        IReadOnlyList<Memory<byte>> destinations,
        int total,
        CancellationToken cancellationToken)
    {
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var n = await RandomAccess.ReadAsync(
                _handle, destinations, offsetBytes, cancellationToken).ConfigureAwait(false);
            if (n < total) FinishShortScatter(offsetBytes, destinations, n);
        }
        catch (Exception e) when (IsIoError(e))
        {
            throw Failure("read", total, offsetBytes, e);
        }
        finally { _inFlight.Release(); }
    }

    /// <summary>
    /// Completes a vectored read that returned <paramref name="done"/> bytes short (a signal, or the end of a regular
    /// file someone truncated): the rest piece by piece, zeroes past the end of the file.
    /// </summary>
    private void FinishShortScatter(long offsetBytes, IReadOnlyList<Memory<byte>> destinations, long done)
    {
        long start = 0;
        foreach (Memory<byte> piece in destinations)
        {
            var end = start + piece.Length;
            if (end > done)
            {
                var skip = (int)Math.Max(0, done - start);
                ReadFully(piece.Span[skip..], offsetBytes + start + skip);
            }
            start = end;
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// One <c>pwritev</c> (repeated by .NET until every byte is written); inline as <see cref="WriteAsync"/>.
    /// </remarks>
    public ValueTask WriteGatherAsync(
        long offsetBytes,
        IReadOnlyList<ReadOnlyMemory<byte>> sources,
        CancellationToken cancellationToken = default)
    {
        var total = DeviceChecks.CheckVector(this, offsetBytes, sources, static m => m.Length, nameof(sources));
        if (total > InlineWriteMaxBytes || cancellationToken.IsCancellationRequested || !_inFlight.Wait(0))
            return WriteGatherQueuedAsync(offsetBytes, sources, total, cancellationToken);
        try
        {
            RandomAccess.Write(_handle, sources, offsetBytes);
            return ValueTask.CompletedTask;
        }
        catch (Exception e)
        {
            return ValueTask.FromException(Failure("write", total, offsetBytes, e));
        }
        finally { _inFlight.Release(); }
    }

    private async ValueTask WriteGatherQueuedAsync(
        long offsetBytes,
        IReadOnlyList<ReadOnlyMemory<byte>> sources,
        int total,
        CancellationToken cancellationToken)
    {
        await _inFlight.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await RandomAccess.WriteAsync(_handle, sources, offsetBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsIoError(e))
        {
            throw Failure("write", total, offsetBytes, e);
        }
        finally { _inFlight.Release(); }
    }

    /// <inheritdoc />
    /// <remarks>Concurrent callers share one <c>fdatasync</c> (<see cref="FlushCoalescer"/>).</remarks>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await _flush.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw new BlockDeviceException(Name, $"fsync failed: {e.Message}", e);
        }
    }

    /// <summary>
    /// <see cref="FlushAsync"/> on the calling thread, which blocks for the <c>fdatasync</c>: for a caller with a thread
    /// of its own (the disk stream's connection, which commits the durable writes it has read as one group).
    /// </summary>
    public void Flush()
    {
        try
        {
            _flush.Flush();
        }
        catch (IOException e)
        {
            throw new BlockDeviceException(Name, $"fsync failed: {e.Message}", e);
        }
    }

    /// <summary>Flushes started so far: fewer than calls of <see cref="FlushAsync"/> when callers shared them.</summary>
    public long FlushesIssued => _flush.Flushes;

    /// <summary>
    /// <c>fdatasync</c>: the data and the metadata needed to read it back (for a preallocated member, the extents a
    /// first write converts), without the timestamps <c>fsync</c> also writes.
    /// </summary>
    private void SyncData()
    {
        var added = false;
        _handle.DangerousAddRef(ref added);
        try
        {
            while (FDataSync((int)_handle.DangerousGetHandle()) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EIntr) continue;
                throw new IOException($"fdatasync: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
            }
        }
        finally
        {
            if (added) _handle.DangerousRelease();
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _handle.Dispose();
        return ValueTask.CompletedTask;
    }

    // Linux ioctls (x86-64 and arm64 share these numbers): BLKGETSIZE64 = _IOR(0x12, 114, size_t),
    // BLKSSZGET = _IO(0x12, 104).
    private const ulong BlkGetSize64 = 0x80081272;
    private const ulong BlkSszGet = 0x1268;

    [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static extern int IoctlU64(int fd, ulong request, out ulong value);

    [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static extern int IoctlInt(int fd, ulong request, out int value);

    private const int EIntr = 4;

    [DllImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static extern int FDataSync(int fd);

    [DllImport("libc", EntryPoint = "posix_fallocate", SetLastError = false)]
    private static extern int PosixFallocate(int fd, long offset, long length);

    private static bool TryGetBlockDeviceSize(SafeFileHandle handle, out long sizeBytes, out int sectorBytes)
    {
        sizeBytes = 0;
        sectorBytes = DefaultFileSectorSizeBytes;
        if (!OperatingSystem.IsLinux()) return false;
        var fd = (int)handle.DangerousGetHandle();
        if (IoctlU64(fd, BlkGetSize64, out var size) != 0) return false;
        sizeBytes = (long)size;
        if (IoctlInt(fd, BlkSszGet, out var sector) == 0 && sector is 512 or 1024 or 2048 or 4096) sectorBytes = sector;
        return true;
    }

    private static void Preallocate(SafeFileHandle handle, long offsetBytes, long lengthBytes)
    {
        // Reserve the blocks now so that a full file system fails here, not in the middle of a stripe write.
        if (!OperatingSystem.IsLinux()) return;
        var rc = PosixFallocate((int)handle.DangerousGetHandle(), offsetBytes, lengthBytes);
        if (rc != 0 && rc != 95 /* EOPNOTSUPP: file system without fallocate; SetLength still sizes it */)
            throw new IOException($"posix_fallocate of {lengthBytes} bytes failed with errno {rc}.");
    }
}
