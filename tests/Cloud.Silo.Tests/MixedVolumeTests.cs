using System.Text;
using System.Text.Json;
using Cloud.Storage.Azure;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>
/// Volumes whose members are files and Azure page blobs (issue 6 item 3), made and inspected with the real cloudctl
/// against a real silo process configured with Azurite's connection string.
/// </summary>
public sealed class MixedVolumeTests
{
    private const string Container = "mix";

    [Fact]
    public async Task Raid5OfFilesAndPageBlobs_CreatedByCloudctl_ReassemblesAfterRestart_AndReadsCorrectlyWithABlobDeleted()
    {
        await using var azurite = await AzuriteInstance.StartAsync();
        using var dir = new TempDirectory();
        var data = Path.Combine(dir.Path, "data");
        var disks = Path.Combine(dir.Path, "disks");
        // The AppHost's and the Bicep templates' key: the silo maps it onto its page-blob account.
        var environment =
            new Dictionary<string, string> { ["Cloud__Azure__ConnectionString"] = azurite.ConnectionString() };

        var seed = Environment.TickCount;
        var pattern = new byte[3 << 20];
        new Random(seed).NextBytes(pattern);
        var input = Path.Combine(dir.Path, "in.bin");
        await File.WriteAllBytesAsync(input, pattern);
        string[] members =
            [$"file:{disks}/m0.img", $"pageblob:{Container}/b1", $"file:{disks}/m2.img", $"pageblob:{Container}/b3"];

        await using (var silo = await SiloProcess.StartAsync(data, environment: environment))
        {
            var created = await CloudctlAsync(silo, "volume", "create", "mix", "--size", "16MiB", "--level", "raid5",
                "--disks", "4",
                "--disk", members[0], "--disk", members[1], "--disk", members[2], "--disk", members[3], "--json");
            Assert.Equal(4, created.RootElement.GetProperty("diskCount").GetInt32());

            await CloudctlAsync(silo, "write", "mix", "--offset", "1MiB", "--from", input, "--json");
            await AssertReadsBackAsync(silo, dir.Path, pattern, seed);

            var status = await CloudctlAsync(silo, "volume", "show", "mix", "--json");
            Assert.Equal("healthy", status.RootElement.GetProperty("health").GetString());
            Assert.Equal(members, Locations(status));
        }

        // The files and blobs alone (and the catalog) bring the volume back.
        Assert.True(
            File.Exists(Path.Combine(disks, "m0.img")), "the file member was not created where --disk named it");
        var blobs = PageBlobConnection.FromConnectionString(azurite.ConnectionString());
        Assert.True(
            (await blobs.GetPageBlobClient(Container, "b1").ExistsAsync()).Value,
            "the page-blob member was not created");
        await using (var silo = await SiloProcess.StartAsync(data, environment: environment))
        {
            await AssertReadsBackAsync(silo, dir.Path, pattern, seed);
            var status = await CloudctlAsync(silo, "volume", "show", "mix", "--json");
            Assert.Equal("healthy", status.RootElement.GetProperty("health").GetString());
            Assert.Equal(members, Locations(status));

            // A page-blob member vanishes under the running volume: its reads fail, the member fails, parity serves
            // them.
            await blobs.GetPageBlobClient(Container, "b3").DeleteAsync();
            await AssertReadsBackAsync(silo, dir.Path, pattern, seed);
            status = await CloudctlAsync(silo, "volume", "show", "mix", "--json");
            Assert.Equal("degraded", status.RootElement.GetProperty("health").GetString());
        }

        // Assembled afresh without the blob: degraded from the start, the data still whole.
        await using (var silo = await SiloProcess.StartAsync(data, environment: environment))
        {
            var status = await CloudctlAsync(silo, "volume", "show", "mix", "--json");
            Assert.Equal("degraded", status.RootElement.GetProperty("health").GetString());
            await AssertReadsBackAsync(silo, dir.Path, pattern, seed);

            // The lost blob is replaced by a new page blob, rebuilt, and the volume is whole again.
            await CloudctlAsync(
                silo, "disk", "replace", "mix", "3", "--disk", $"pageblob:{Container}/b3-new", "--json");
            await CloudctlAsync(silo, "rebuild", "mix", "--wait", "--json");
            status = await CloudctlAsync(silo, "volume", "show", "mix", "--json");
            Assert.Equal("healthy", status.RootElement.GetProperty("health").GetString());
            Assert.Equal($"pageblob:{Container}/b3-new", Locations(status)[3]);
            await AssertReadsBackAsync(silo, dir.Path, pattern, seed);
        }
    }

    [Fact]
    public async Task AVolumeSpecTheSiloRefuses_IsReportedUnderCloudctlsFlag_WithTheValue()
    {
        using var dir = new TempDirectory();
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"));

        // Well formed for cloudctl (a size), refused by the silo (not a power of two): the silo names ChunkSizeBytes.
        var chunk = await RunCloudctlAsync(
            silo, "volume", "create", "v", "--size", "1MiB", "--level", "raid1", "--disks", "2", "--chunk", "12KiB");
        Assert.Equal(1, chunk.ExitCode);
        Assert.Contains(
            "cloudctl: --chunk 12288 is not a power of two between 4096 and 1048576",
            chunk.Error,
            StringComparison.Ordinal);

        var disks = await RunCloudctlAsync(
            silo, "volume", "create", "v", "--size", "1MiB", "--level", "raid5", "--disks", "2");
        Assert.Equal(1, disks.ExitCode);
        Assert.Contains(
            "cloudctl: --disks 2 is not allowed for raid5; use 3-32", disks.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PageBlobDisks_AreRefusedWithAClearError_WhenTheSiloHasNoAccount_AndBadDescriptorsAreNamed()
    {
        using var dir = new TempDirectory();
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"));

        var noAccount = await RunCloudctlAsync(silo, "volume", "create", "v", "--size", "1MiB", "--level", "raid1",
            "--disk", $"file:{dir.Path}/a.img", "--disk", "pageblob:disks1/b");
        Assert.Equal(1, noAccount.ExitCode);
        Assert.Contains("pageblob:disks1/b", noAccount.Error, StringComparison.Ordinal);
        Assert.Contains("no page-blob account", noAccount.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir.Path, "a.img")), "the refused request left its file member behind");

        var bad = await RunCloudctlAsync(
            silo,
            "volume",
            "create",
            "v",
            "--size",
            "1MiB",
            "--level",
            "raid1",
            "--disk",
            "s3:bucket/x",
            "--disk",
            "file:/tmp/x");
        Assert.Equal(2, bad.ExitCode); // bad usage, refused before any request
        Assert.Contains("'s3:bucket/x'", bad.Error, StringComparison.Ordinal);
        Assert.Contains("file:PATH or pageblob:CONTAINER/BLOB", bad.Error, StringComparison.Ordinal);

        var miscounted = await RunCloudctlAsync(silo, "volume", "create", "v", "--size", "1MiB", "--level", "raid1",
            "--disks", "3",
            "--disk", $"file:{dir.Path}/a.img", "--disk", $"file:{dir.Path}/b.img");
        Assert.Equal(2, miscounted.ExitCode);
        Assert.Contains("--disks 3", miscounted.Error, StringComparison.Ordinal);

        // PostgreSQL clustering without a connection string is bad usage too, named as such, before any connection.
        var noConnection = await RunCloudctlAsync(silo, "--clustering", "postgres", "volume", "list");
        Assert.Equal(2, noConnection.ExitCode);
        Assert.Contains("--clustering postgres needs --connection", noConnection.Error, StringComparison.Ordinal);

        // Well formed for cloudctl, refused by the silo: an upper-case container name is not a valid Azure name.
        var badName = await RunCloudctlAsync(silo, "volume", "create", "v", "--size", "1MiB", "--level", "raid1",
            "--disk", $"file:{dir.Path}/a.img", "--disk", "pageblob:Disks/b");
        Assert.Equal(1, badName.ExitCode);
        Assert.Contains("'pageblob:Disks/b'", badName.Error, StringComparison.Ordinal);
        Assert.Contains("'file:PATH' or 'pageblob:CONTAINER/BLOB'", badName.Error, StringComparison.Ordinal);

        // Nothing was made by the refused requests.
        var list = await CloudctlAsync(silo, "volume", "list", "--json");
        Assert.Equal(0, list.RootElement.GetArrayLength());
    }

    [Fact]
    public async Task CreateFailingOnItsLastDisk_RemovesThePageBlobAndFileItMade()
    {
        await using var azurite = await AzuriteInstance.StartAsync();
        using var dir = new TempDirectory();
        var environment =
            new Dictionary<string, string> { ["Cloud__Azure__ConnectionString"] = azurite.ConnectionString() };
        // A regular file where the last member's directory would have to be.
        var blocker = Path.Combine(dir.Path, "not-a-directory");
        await File.WriteAllTextAsync(blocker, "x");
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"), environment: environment);

        var failed = await RunCloudctlAsync(silo, "volume", "create", "half", "--size", "4MiB", "--level", "raid5",
            "--disk", $"pageblob:{Container}/made", "--disk", $"file:{dir.Path}/a.img", "--disk", $"file:{blocker}/c.img");
        Assert.Equal(1, failed.ExitCode);
        Assert.Contains("'half'", failed.Error, StringComparison.Ordinal);
        Assert.Contains("c.img", failed.Error, StringComparison.Ordinal);

        var blobs = PageBlobConnection.FromConnectionString(azurite.ConnectionString());
        Assert.False(
            (await blobs.GetPageBlobClient(Container, "made").ExistsAsync()).Value,
            "the failed create left its page blob behind");
        Assert.False(File.Exists(Path.Combine(dir.Path, "a.img")), "the failed create left its file member behind");
        var list = await CloudctlAsync(silo, "volume", "list", "--json");
        Assert.Equal(0, list.RootElement.GetArrayLength());
    }

    private static string[] Locations(JsonDocument status) =>
        [.. status.RootElement.GetProperty("disks").EnumerateArray().OrderBy(d => d.GetProperty("index").GetInt32()).Select(d => d.GetProperty("path").GetString()!)];

    private static async Task AssertReadsBackAsync(SiloProcess silo, string directory, byte[] expected, int seed)
    {
        var output = Path.Combine(directory, $"out-{Guid.NewGuid():N}.bin");
        await CloudctlAsync(
            silo,
            "read",
            "mix",
            "--offset",
            "1MiB",
            "--length",
            expected.Length.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--to",
            output,
            "--json");
        var actual = await File.ReadAllBytesAsync(output);
        File.Delete(output);
        Assert.True(
            expected.AsSpan().SequenceEqual(actual), $"the bytes read back differ from those written (seed {seed})");
    }

    private static Task<JsonDocument> CloudctlAsync(SiloProcess silo, params string[] arguments) =>
        Cloudctl.JsonAsync(silo, arguments);

    private static Task<(int ExitCode, string Output, string Error)> RunCloudctlAsync(
        SiloProcess silo,
        params string[] arguments) =>
        Cloudctl.RunAsync(silo, arguments);
}
