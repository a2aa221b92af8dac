using System.Collections.Immutable;
using System.Text.Json;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Volumes;

/// <summary>
/// The volume catalog on disk: <c>{data}/catalog.json</c>, replaced atomically (write, fsync, rename) so a crash
/// leaves the old or the new catalog, never a torn one. The volumes' data needs nothing else: each is assembled
/// from its member disks' superblocks.
/// </summary>
public sealed class CatalogStore(IOptions<CloudOptions> options)
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    private string PathOf => Path.Combine(options.Value.DataDirectory, "catalog.json");

    /// <summary>The directory under which new volumes' member disks are created.</summary>
    public string VolumesDirectory => Path.GetFullPath(Path.Combine(options.Value.DataDirectory, "volumes"));

    /// <summary>Every volume recorded, or none for a fresh data directory.</summary>
    public async Task<ImmutableArray<VolumeInfo>> LoadAsync()
    {
        if (!File.Exists(PathOf)) return [];
        await using var stream = File.OpenRead(PathOf);
        var volumes = await JsonSerializer.DeserializeAsync<VolumeInfo[]>(stream, Json).ConfigureAwait(false)
            ?? throw new InvalidDataException($"{PathOf} holds no volume list");
        return [.. volumes];
    }

    private string SlotsPath => Path.Combine(options.Value.DataDirectory, "writer-slots.json");

    /// <summary>The silos' write-intent slots by silo name.</summary>
    public async Task<Dictionary<string, int>> LoadSlotsAsync()
    {
        if (!File.Exists(SlotsPath)) return new(StringComparer.Ordinal);
        await using var stream = File.OpenRead(SlotsPath);
        var slots = await JsonSerializer.DeserializeAsync<Dictionary<string, int>>(stream, Json).ConfigureAwait(false);
        return new(slots ?? [], StringComparer.Ordinal);
    }

    /// <summary>Durably replaces the slot table.</summary>
    public Task SaveSlotsAsync(Dictionary<string, int> slots) => ReplaceAsync(SlotsPath, slots);

    private async Task ReplaceAsync<T>(string path, T value)
    {
        Directory.CreateDirectory(options.Value.DataDirectory);
        var temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        await using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
        {
            await JsonSerializer.SerializeAsync(stream, value, Json).ConfigureAwait(false);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Durably replaces the catalog.</summary>
    public Task SaveAsync(IEnumerable<VolumeInfo> volumes) =>
        ReplaceAsync(PathOf, volumes.OrderBy(v => v.Name, StringComparer.Ordinal).ToArray());
}
