using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Storage;

namespace Cloud.Grains.Hosting;

/// <summary>
/// Grain storage in a directory, for localhost mode: one file per grain state, replaced atomically (a temporary file,
/// fsync, rename), so a crash leaves the old or the new state and never a torn one. Writes follow the ETag rule of
/// Orleans' database providers: a write or clear whose ETag is not the stored one throws
/// <see cref="InconsistentStateException"/> and changes nothing, so two activations of one grain (on one silo or on
/// several silos sharing the directory) can never both write.
/// </summary>
/// <remarks>
/// A file starts with one text line, <c>cloud-grain-state 1 etag=N</c> (with <c> cleared</c> after a clear), followed
/// by the serializer's bytes. The ETag is a counter that every write and clear increases, and a clear keeps the
/// file (as a tombstone) so an activation that read the state before the clear cannot write afterwards. Writes of
/// every process sharing the directory serialize on an exclusive lock of <c>.lock</c> in it; reads need no lock,
/// because a rename replaces a file whole.
/// </remarks>
public sealed class FileGrainStorage : IGrainStorage
{
    /// <summary>The extension of a state file.</summary>
    public const string FileExtension = ".state";

    /// <summary>The longest state file name; longer keys are refused, since file systems stop at 255 bytes.</summary>
    public const int MaxFileNameLength = 240;

    /// <summary>How long a write waits for another process's write to the same directory before it gives up.</summary>
    public static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(30);

    private const string Magic = "cloud-grain-state 1";
    private const string ClearedMark = " cleared";

    private readonly IGrainStorageSerializer _serializer;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>Creates a provider over <paramref name="directory"/> (created on first write).</summary>
    /// <param name="directory">The directory that holds the state files.</param>
    /// <param name="serializer">Turns states into bytes and back; the silo's <see cref="IGrainStorageSerializer"/>, as
    /// the database providers use.</param>
    public FileGrainStorage(string directory, IGrainStorageSerializer serializer)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(serializer);
        Directory = Path.GetFullPath(directory);
        _serializer = serializer;
    }

    /// <summary>The directory that holds the state files.</summary>
    public string Directory { get; }

    /// <summary>The directory, under a data directory, that localhost mode keeps grain state in.</summary>
    public static string DirectoryUnder(string dataDirectory) => Path.Combine(dataDirectory, "state");

    /// <summary>
    /// The provider a silo registers under <paramref name="name"/>: in <c>{data}/state</c>, with the serializer
    /// registered for that name or else the silo's default, as Orleans' own providers choose theirs.
    /// </summary>
    public static FileGrainStorage Create(IServiceProvider services, string name)
    {
        ArgumentNullException.ThrowIfNull(services);
        var data = services.GetRequiredService<IOptions<CloudOptions>>().Value.DataDirectory;
        var serializer = services.GetKeyedService<IGrainStorageSerializer>(name)
            ?? services.GetRequiredService<IGrainStorageSerializer>();
        return new FileGrainStorage(DirectoryUnder(data), serializer);
    }

    /// <summary>The file that holds one grain's state of one name.</summary>
    public string PathOf(string stateName, GrainId grainId)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateName);
        // Escaping keeps '/' and other separators in grain keys (partition keys are "volume/partition") out of the
        // path.
        var name = Uri.EscapeDataString(stateName) + "." + Uri.EscapeDataString(grainId.ToString()) + FileExtension;
        if (name.Length > MaxFileNameLength)
            throw new ArgumentException(
                $"the state file name for {stateName} of {grainId} would be {name.Length} characters; at most {MaxFileNameLength} are allowed",
                nameof(grainId));
        return Path.Combine(Directory, name);
    }

    /// <inheritdoc />
    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        ArgumentNullException.ThrowIfNull(grainState);
        var stored = await ReadFileAsync(PathOf(stateName, grainId)).ConfigureAwait(false);
        grainState.ETag = stored?.ETag;
        grainState.RecordExists = stored?.Payload is not null;
        grainState.State = stored?.Payload is { } payload
            ? _serializer.Deserialize<T>(payload)
            : Activator.CreateInstance<T>();
    }

    /// <inheritdoc />
    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        ArgumentNullException.ThrowIfNull(grainState);
        var path = PathOf(stateName, grainId);
        var payload = _serializer.Serialize(grainState.State);
        var etag = await UnderLockAsync(
            path, grainState.ETag, "write", next => ReplaceAsync(path, next, payload)).ConfigureAwait(false);
        grainState.ETag = etag;
        grainState.RecordExists = true;
    }

    /// <inheritdoc />
    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        ArgumentNullException.ThrowIfNull(grainState);
        var path = PathOf(stateName, grainId);
        var etag = await UnderLockAsync(
            path, grainState.ETag, "clear", next => ReplaceAsync(path, next, payload: null)).ConfigureAwait(false);
        grainState.ETag = etag;
        grainState.RecordExists = false;
    }

    /// <summary>
    /// Checks <paramref name="expectedETag"/> against the stored one and runs <paramref name="replace"/> with the next
    /// ETag, all under the directory's lock, so no other writer can slip in between the check and the rename.
    /// </summary>
    private async Task<string> UnderLockAsync(
        string path,
        string? expectedETag,
        string operation,
        Func<string, Task> replace)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            await using var directoryLock = await FileLock.AcquireAsync(
                Path.Combine(Directory, ".lock"), LockTimeout).ConfigureAwait(false);
            var storedETag = (await ReadFileAsync(path).ConfigureAwait(false))?.ETag;
            if (!string.Equals(storedETag, expectedETag, StringComparison.Ordinal))
            {
                throw new InconsistentStateException(
                    $"{operation} of {Path.GetFileName(path)} refused: it is at ETag '{storedETag ?? "(none)"}' but this activation holds '{expectedETag ?? "(none)"}'; another activation wrote it",
                    storedETag ?? "", expectedETag ?? "");
            }
            var next =
                (storedETag is null ? 1 : long.Parse(storedETag, System.Globalization.CultureInfo.InvariantCulture) + 1)
                .ToString(System.Globalization.CultureInfo.InvariantCulture);
            await replace(next).ConfigureAwait(false);
            return next;
        }
        finally
        {
            _gate.Release();
        }
    }

    private sealed record StoredState(string ETag, BinaryData? Payload);

    /// <summary>The stored ETag and payload (null for a tombstone), or null when the file does not exist.</summary>
    private static async Task<StoredState?> ReadFileAsync(string path)
    {
        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(path).ConfigureAwait(false);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
        var end = Array.IndexOf(bytes, (byte)'\n');
        var header = end < 0 ? "" : Encoding.ASCII.GetString(bytes, 0, end);
        const string prefix = Magic + " etag=";
        if (!header.StartsWith(prefix, StringComparison.Ordinal))
            throw new InvalidDataException($"{path} is not a grain state file: its first line is not '{prefix}N'");
        var cleared = header.EndsWith(ClearedMark, StringComparison.Ordinal);
        var etag = header[prefix.Length..(header.Length - (cleared ? ClearedMark.Length : 0))];
        if (!long.TryParse(
                etag, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _))
            throw new InvalidDataException($"{path} has ETag '{etag}'; expected a non-negative number");
        return new StoredState(etag, cleared ? null : new BinaryData(bytes.AsMemory(end + 1)));
    }

    /// <summary>
    /// Replaces the file whole: a temporary file in the same directory, flushed to disk, then renamed over it.
    /// </summary>
    private static async Task ReplaceAsync(string path, string etag, BinaryData? payload)
    {
        var temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        try
        {
            await using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                await stream.WriteAsync(
                    Encoding.ASCII.GetBytes($"{Magic} etag={etag}{(payload is null ? ClearedMark : "")}\n"))
                    .ConfigureAwait(false);
                if (payload is not null) await stream.WriteAsync(payload.ToMemory()).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
