using System.Buffers.Binary;
using System.Globalization;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Locks;

/// <summary>A partition-lock grain's persisted state: its clock reservation.</summary>
[GenerateSerializer, Alias("cloud.PartitionClockState")]
internal sealed class PartitionClockState
{
    /// <summary>
    /// The highest timestamp (and fencing token) the partition may hand out before it must persist a new
    /// reservation; 0 when it never handed one out. A reactivated grain, on any silo, starts above it.
    /// </summary>
    [Id(0)]
    public long ReservedUpTo { get; set; }
}

/// <summary>
/// The clock reservation's size, and the files that held the reservations (<c>{data}/clocks/*.clock</c>, one
/// little-endian 64-bit number per partition) before they became each partition-lock grain's state. Only
/// <see cref="StateImport"/> reads those files, once, and then renames the directory to <c>clocks.imported</c>.
/// </summary>
public sealed class PartitionClockStore(IOptions<CloudOptions> options)
{
    /// <summary>
    /// How many timestamps one reservation covers: one state write per million writes to a partition.
    /// </summary>
    public const long ReservationSize = 1L << 20;

    /// <summary>The clock directory of data directories from before grain state.</summary>
    public string LegacyDirectory => Path.GetFullPath(Path.Combine(options.Value.DataDirectory, "clocks"));

    /// <summary>
    /// Every reservation in <see cref="LegacyDirectory"/> by partition key, or null when there is no such directory.
    /// Files whose names are not of a partition (<c>{volume id}-{partition}.clock</c>) are returned in
    /// <paramref name="skipped"/>.
    /// </summary>
    public async Task<Dictionary<string, long>?> ReadLegacyAsync(List<string> skipped)
    {
        ArgumentNullException.ThrowIfNull(skipped);
        if (!Directory.Exists(LegacyDirectory)) return null;
        var clocks = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var path in Directory.EnumerateFiles(LegacyDirectory, "*.clock").Order(StringComparer.Ordinal))
        {
            if (PartitionKeyOf(Path.GetFileNameWithoutExtension(path)) is not { } key)
            {
                skipped.Add(path);
                continue;
            }
            var bytes = await File.ReadAllBytesAsync(path).ConfigureAwait(false);
            if (bytes.Length != 8)
                throw new InvalidDataException($"partition clock {path} has {bytes.Length} bytes; expected 8");
            clocks[key] = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        }
        return clocks;
    }

    /// <summary>
    /// The partition key a clock file was named for. The files replaced the key's '/' by '-'; a volume id is 32 hex
    /// digits without dashes, so the first '-' is the one that was a '/'.
    /// </summary>
    internal static string? PartitionKeyOf(string fileName)
    {
        var dash = fileName.IndexOf('-', StringComparison.Ordinal);
        if (dash != 32 || !Guid.TryParseExact(fileName[..dash], "N", out _)) return null;
        if (!long.TryParse(fileName[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out _)) return null;
        return fileName[..dash] + "/" + fileName[(dash + 1)..];
    }
}
