using System.Text.Json;

namespace Cloud.Silo.Tests;

/// <summary>
/// The runtime settings the silo ships with (<c>Cloud.Silo.runtimeconfig.json</c>, from silo/Cloud.Silo.csproj), as
/// <c>dotnet Cloud.Silo.dll</c> and the container image read them.
/// </summary>
public sealed class RuntimeConfigTests
{
    private static JsonElement ConfigProperties()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Cloud.Silo.runtimeconfig.json");
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        return json.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties").Clone();
    }

    [Fact]
    public void LargeWritePayloads_StayOffTheLargeObjectHeap()
    {
        Assert.True(
            ConfigProperties().TryGetProperty("System.GC.LOHThreshold", out var threshold),
            "the silo's runtimeconfig does not set System.GC.LOHThreshold");
        Assert.True(threshold.GetInt32() >= 4 << 20, $"LOH threshold {threshold.GetInt32()} is below the NBD server's 4 MiB payloads");
    }
}
