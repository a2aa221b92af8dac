using System.Text.Json;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>
/// A data directory from before the catalog and writer slots became grain state (<c>catalog.json</c>,
/// <c>writer-slots.json</c>), met by the real silo process in localhost mode.
/// </summary>
public sealed class StateImportTests
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Creates a volume with <paramref name="pattern"/> at offset 0 on a silo of <paramref name="data"/>, and returns
    /// its catalog entry.
    /// </summary>
    private static async Task<VolumeInfo> CreateWithDataAsync(string data, string name, byte[] pattern)
    {
        await using var silo = await SiloProcess.StartAsync(data);
        await using var client = await CloudClient.ConnectAsync(silo.Gateway);
        var info = await client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: true));
        var volume = await client.OpenVolumeAsync(name);
        await volume.WriteAsync(0, pattern, forceUnitAccess: true);
        return info;
    }

    /// <summary>
    /// Turns the catalog and writer slots of <paramref name="data"/> back into the files of before (the clocks stay
    /// grain state), as a data directory of an older silo has them.
    /// </summary>
    private static async Task MakeOldAsync(string data, VolumeInfo[] volumes)
    {
        var json = new JsonSerializerOptions { WriteIndented = true };
        await File.WriteAllTextAsync(Path.Combine(data, "catalog.json"), JsonSerializer.Serialize(volumes, json));
        await File.WriteAllTextAsync(
            Path.Combine(data, "writer-slots.json"),
            JsonSerializer.Serialize(new Dictionary<string, int> { ["s1"] = 0 }, json));
        foreach (var file in Directory.GetFiles(Path.Combine(data, "state"), "catalog.*").Concat(Directory.GetFiles(Path.Combine(data, "state"), "writer-slots.*")))
            File.Delete(file);
    }

    [Fact]
    public async Task OldDataDirectory_KeepsItsVolumeAndItsData_ThroughTheOneTimeImport()
    {
        using var dir = new TempDirectory();
        var data = Path.Combine(dir.Path, "data");
        var pattern = new byte[64 << 10];
        new Random(7).NextBytes(pattern);
        var info = await CreateWithDataAsync(data, "kept", pattern);
        await MakeOldAsync(data, [info]);

        await using var silo = await SiloProcess.StartAsync(data);
        await using var client = await CloudClient.ConnectAsync(silo.Gateway);

        Assert.Equal(["kept"], (await client.ListVolumesAsync()).Select(v => v.Name));
        var read = new byte[pattern.Length];
        await (await client.OpenVolumeAsync("kept")).ReadAsync(0, read);
        Assert.Equal(pattern, read);
        Assert.True(File.Exists(Path.Combine(data, "catalog.json.imported")));
        Assert.False(File.Exists(Path.Combine(data, "catalog.json")));
        Assert.Contains("Imported ", silo.Process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OldCatalogFile_BesideADifferentStoredCatalog_StopsTheSilo_WithOneLineNamingTheFileAndTheCommand()
    {
        using var dir = new TempDirectory();
        var data = Path.Combine(dir.Path, "data");
        var stored = await CreateWithDataAsync(data, "stored", new byte[4096]);
        var json = JsonSerializer.Serialize(new[] { stored with { Name = "other", VolumeId = Guid.NewGuid() } });
        var catalogPath = Path.Combine(data, "catalog.json");
        await File.WriteAllTextAsync(catalogPath, json);

        var ports = FreePorts.Next(4);
        await using var silo = ChildProcess.StartDotnet("silo refused",
            Path.Combine(AppContext.BaseDirectory, "Cloud.Silo.dll"),
        [
            "--data", data, "--name", "s1", "--silo-port", $"{ports[0]}", "--gateway-port", $"{ports[1]}", "--nbd-port",
            $"{ports[2]}", "--http-port", $"{ports[3]}",
        ]);
        Assert.Equal(2, await silo.ExitAsync(ExitTimeout));
        var line = Assert.Single(silo.Output.Split('\n'), l => l.StartsWith("cloud-silo: ", StringComparison.Ordinal));
        Assert.Contains(
            $"mv '{Path.GetFullPath(catalogPath)}' '{Path.GetFullPath(catalogPath)}.imported'",
            line,
            StringComparison.Ordinal);
        Assert.True(File.Exists(catalogPath), "the refused import renamed the file");
    }
}
