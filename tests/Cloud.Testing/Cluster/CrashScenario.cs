using System.Diagnostics;
using Cloud.Client;
using Cloud.Grains.Abstractions;

namespace Cloud.Testing;

/// <summary>Steps the crash tests and the trial runner share.</summary>
public static class CrashScenario
{
    /// <summary>
    /// The crash tests' volume: RAID-5 on 4 file-backed disks, small chunks so it has many stripes and partitions.
    /// </summary>
    public const long VolumeBytes = 16L << 20;

    /// <summary>Chunk size of the crash tests' volume.</summary>
    public const int ChunkBytes = 16 << 10;

    /// <summary>Concurrent writers (each sequential on its own region).</summary>
    public const int Writers = 4;

    /// <summary>Creates the test volume.</summary>
    public static async Task<CloudVolume> CreateVolumeAsync(CloudClient client, string name)
    {
        await client.CreateVolumeAsync(new VolumeSpec(name, VolumeBytes, VolumeLevel.Raid5, 4, ChunkBytes, false));
        return await client.OpenVolumeAsync(name);
    }

    /// <summary>A write stream over <paramref name="volume"/>.</summary>
    public static WriteStream NewStream(CloudVolume volume, int seed) => new(volume.SizeBytes, Writers, seed);

    /// <summary>The partition-lock grain key of a partition (the same rule as the grains' VolumeMath).</summary>
    public static string PartitionKey(VolumeInfo volume, long partition) => $"{volume.VolumeId:N}/{partition}";

    /// <summary>Bound on retrying a control call while the cluster notices a dead silo.</summary>
    public static readonly TimeSpan RetryTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Runs <paramref name="call"/> until it succeeds: right after a kill, calls to grains that lived on the dead silo
    /// fail until membership declares it dead and the grains are placed anew; an application retries the same way.
    /// </summary>
    public static async Task<T> RetryAsync<T>(Func<Task<T>> call)
    {
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            try { return await call(); }
            catch (Exception ex) when (Stopwatch.GetElapsedTime(start) < RetryTimeout && IsTransient(ex))
            {
                await Task.Delay(RetryPollInterval);
            }
        }
    }

    /// <summary>The pause between two attempts of <see cref="RetryAsync{T}"/>.</summary>
    private static readonly TimeSpan RetryPollInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>The failures a call meets while the cluster has not yet declared a killed silo dead.</summary>
    private static bool IsTransient(Exception ex) =>
        ex is Orleans.Runtime.SiloUnavailableException
            or Orleans.Runtime.OrleansMessageRejectionException
            or TimeoutException;

    /// <summary>Opens a volume, retrying while a dead silo's grains move.</summary>
    public static Task<CloudVolume> OpenAsync(CloudClient client, string name)
        => RetryAsync(() => client.OpenVolumeAsync(name));

    /// <summary>The running silo (not <paramref name="exclude"/>) that performed the most delegated writes.</summary>
    public static async Task<int> BusiestDelegateAsync(CloudClient client, SiloProcesses silos, int exclude)
    {
        var status = await RetryAsync(client.GetClusterStatusAsync);
        var best = status.Silos
            .Select(s => (
                Index: Array.FindIndex(
                    Enumerable.Range(0, silos.Count).ToArray(), i => SiloProcesses.NameOf(i) == s.SiloName),
                s.WritesPerformed))
            .Where(s => s.Index >= 0 && s.Index != exclude && silos.IsRunning(s.Index))
            .OrderByDescending(s => s.WritesPerformed).ThenBy(s => s.Index)
            .FirstOrDefault((Index: -1, WritesPerformed: 0));
        if (best.Index < 0) throw new InvalidOperationException("no running delegate silo in the load table");
        return best.Index;
    }
}
