using System.Buffers.Binary;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Locks;

/// <summary>
/// Persists each partition's clock reservation: the highest timestamp (and fencing token) the partition may hand out
/// before it must persist a new reservation. A reactivated partition-lock grain, on any silo, starts above it, so
/// timestamps and tokens only grow. Files live under <c>{data}/clocks</c>, written to a temporary name, flushed and
/// renamed, so a crash leaves either the old or the new reservation.
/// </summary>
public sealed class PartitionClockStore(IOptions<CloudOptions> options)
{
    /// <summary>How many timestamps one reservation covers: one file write per million writes to a partition.</summary>
    public const long ReservationSize = 1L << 20;

    private string Directory => Path.Combine(options.Value.DataDirectory, "clocks");

    private string FileOf(string partitionKey) => Path.Combine(Directory, partitionKey.Replace('/', '-') + ".clock");

    /// <summary>The persisted reservation, or 0 when the partition never handed out a timestamp.</summary>
    public async Task<long> ReadAsync(string partitionKey)
    {
        var path = FileOf(partitionKey);
        if (!File.Exists(path)) return 0;
        var bytes = await File.ReadAllBytesAsync(path).ConfigureAwait(false);
        if (bytes.Length != 8)
            throw new InvalidDataException($"partition clock {path} has {bytes.Length} bytes; expected 8");
        return BinaryPrimitives.ReadInt64LittleEndian(bytes);
    }

    /// <summary>Durably records a new reservation.</summary>
    public async Task WriteAsync(string partitionKey, long reservedUpTo)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var path = FileOf(partitionKey);
        var temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, reservedUpTo);
        await using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.WriteThrough))
        {
            await stream.WriteAsync(bytes).ConfigureAwait(false);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }
}
