using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Disks;

/// <summary>
/// This silo's disk pools (<see cref="CloudOptions.DiskPools"/>, <c>--disk-pool DIR</c>): directories on this host in
/// which the catalog places new volumes' members, one member per host. Their free capacity is published in the load
/// table (and shown by <c>cloudctl status</c>) so that the catalog can put each member on the host with the most room.
/// </summary>
public sealed class DiskPools(IOptions<CloudOptions> options, TimeProvider time)
{
    /// <summary>How long a measured free capacity is reused: the load publisher asks for it several times a second.</summary>
    public static readonly TimeSpan MeasureIntervalMax = TimeSpan.FromSeconds(1);

    private (DateTimeOffset At, long Capacity, long Free) _measured = (DateTimeOffset.MinValue, 0, 0);

    /// <summary>The pools' full paths, as configured.</summary>
    public IReadOnlyList<string> Directories { get; } =
        [.. options.Value.DiskPools.Select(p => Path.TrimEndingDirectorySeparator(Path.GetFullPath(p)))];

    /// <summary>The total size in bytes of the file systems under the pools (each file system counted once).</summary>
    public long CapacityBytes => Measure().Capacity;

    /// <summary>The bytes free for members in the pools (each file system counted once).</summary>
    public long FreeBytes => Measure().Free;

    /// <summary>Whether <paramref name="fullPath"/> lies inside one of the pools.</summary>
    public bool Contains(string fullPath)
    {
        foreach (var pool in Directories)
        {
            if (fullPath.StartsWith(pool + Path.DirectorySeparatorChar, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    /// <summary>
    /// The full path for a new member <paramref name="relativePath"/> (<c>VOLUME-TAG/diskN.img</c>) in the pool with the
    /// most free space, which must hold <paramref name="sizeBytes"/>.
    /// </summary>
    /// <exception cref="CloudRequestException">No pool, a bad relative path, or no pool with room.</exception>
    public string Place(string relativePath, long sizeBytes)
    {
        if (Directories.Count == 0)
            throw new CloudRequestException(
                $"host '{options.Value.HostName}' has no disk pool; start its silo with --disk-pool DIR");
        if (Path.IsPathRooted(relativePath) || relativePath.Split('/').Any(p => p is "" or "." or ".."))
            throw new CloudRequestException(
                $"member name '{relativePath}' is not allowed; use a relative path without '.' or '..' parts");
        string? best = null;
        long bestFree = -1;
        foreach (var pool in Directories)
        {
            var free = FreeOf(pool);
            if (free > bestFree) (best, bestFree) = (pool, free);
        }
        if (best is null || bestFree < sizeBytes)
            throw new CloudRequestException(
                $"host '{options.Value.HostName}': no disk pool has {sizeBytes} bytes free for a member (most free: {bestFree} bytes in {best})");
        return Path.Combine(best, relativePath);
    }

    /// <summary>
    /// The problems of configured pools, one line each (a pool that is missing or not a directory), for the options
    /// validator.
    /// </summary>
    public static IEnumerable<string> Check(IEnumerable<string> pools)
    {
        foreach (var pool in pools)
        {
            if (string.IsNullOrWhiteSpace(pool))
                yield return "Cloud:DiskPools has an empty entry; give existing directories (--disk-pool DIR, repeatable).";
            else if (!Directory.Exists(pool))
                yield return
                    $"Cloud:DiskPools '{pool}' does not exist or is not a directory; give existing directories (--disk-pool DIR, repeatable).";
        }
    }

    private (DateTimeOffset At, long Capacity, long Free) Measure()
    {
        var now = time.GetUtcNow();
        var measured = _measured;
        if (now - measured.At < MeasureIntervalMax) return measured;
        long capacity = 0, free = 0;
        // Pools on one file system share its free space: count each file system once.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pool in Directories)
        {
            try
            {
                var drive = new DriveInfo(pool);
                if (!seen.Add(drive.RootDirectory.FullName)) continue;
                capacity += drive.TotalSize;
                free += drive.AvailableFreeSpace;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
            {
                // A pool that vanished after start offers nothing; the operator sees 0 free in status.
            }
        }
        _measured = (now, capacity, free);
        return _measured;
    }

    private static long FreeOf(string pool)
    {
        try
        {
            return new DriveInfo(pool).AvailableFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return -1;
        }
    }
}
