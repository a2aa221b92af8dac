using System.Collections.Immutable;
using System.Text.Json;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Volumes;

/// <summary>
/// The catalog's places in the data directory: where new volumes' member disks are created, and the files that held
/// the catalog (<c>{data}/catalog.json</c>) and the writer slots (<c>{data}/writer-slots.json</c>) before they became
/// grain state. Only <see cref="StateImport"/> reads those files, once, and then renames them to <c>*.imported</c>.
/// </summary>
public sealed class CatalogStore(IOptions<CloudOptions> options)
{
    /// <summary>The suffix an imported file gets, so that it is never read again.</summary>
    public const string ImportedSuffix = ".imported";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>The catalog file of data directories from before grain state.</summary>
    public string CatalogPath => Path.GetFullPath(Path.Combine(options.Value.DataDirectory, "catalog.json"));

    /// <summary>The writer-slot file of data directories from before grain state.</summary>
    public string SlotsPath => Path.GetFullPath(Path.Combine(options.Value.DataDirectory, "writer-slots.json"));

    /// <summary>The directory under which new volumes' member disks are created.</summary>
    public string VolumesDirectory => Path.GetFullPath(Path.Combine(options.Value.DataDirectory, "volumes"));

    /// <summary>Every volume <see cref="CatalogPath"/> records, or null when there is no such file.</summary>
    public async Task<ImmutableArray<VolumeInfo>?> LoadLegacyCatalogAsync()
    {
        if (!File.Exists(CatalogPath)) return null;
        await using var stream = File.OpenRead(CatalogPath);
        var volumes = await JsonSerializer.DeserializeAsync<VolumeInfo[]>(stream, Json).ConfigureAwait(false)
            ?? throw new InvalidDataException($"{CatalogPath} holds no volume list");
        return [.. volumes];
    }

    /// <summary>
    /// The silos' write-intent slots by silo name from <see cref="SlotsPath"/>, or null when there is no such file.
    /// </summary>
    public async Task<Dictionary<string, int>?> LoadLegacySlotsAsync()
    {
        if (!File.Exists(SlotsPath)) return null;
        await using var stream = File.OpenRead(SlotsPath);
        var slots = await JsonSerializer.DeserializeAsync<Dictionary<string, int>>(stream, Json).ConfigureAwait(false);
        return new(slots ?? [], StringComparer.Ordinal);
    }
}
