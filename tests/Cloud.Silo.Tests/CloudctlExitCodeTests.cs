using System.Text.Json;
using Cloud.Storage.Format;

namespace Cloud.Silo.Tests;

/// <summary>
/// cloudctl's exit codes (issue 13, item 7), with the real cloudctl against a real silo: 0 done, 1 refused or failed
/// by the service, 2 bad usage, and 3 for a scrub that found problems it did not repair. Scripts branch on these, so
/// each is pinned by the case that produces it.
/// </summary>
public sealed class CloudctlExitCodeTests
{
    private const string Volume = "codes";

    /// <summary>Bytes imported into the volume, so that its first blocks carry data and checksums to corrupt.</summary>
    private const int ImageBytes = 64 << 10;

    [Fact]
    public async Task ExitCodes_AreZeroOnSuccess_TwoOnBadUsage_AndOneForAnUnknownVolume()
    {
        using var dir = new TempDirectory();
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"));

        Assert.Equal(0, (await Cloudctl.RunAsync(silo, "volume", "list")).ExitCode);
        Assert.Equal(0, (await Cloudctl.RunAsync(silo, "scrub", "--help")).ExitCode);
        Assert.Equal(
            0,
            (await Cloudctl.RunAsync(
                silo, "volume", "create", Volume, "--size", "1MiB", "--level", "raid1", "--disks", "2")).ExitCode);

        // Bad usage is refused before any request: a missing option, an unknown command, a missing argument.
        await AssertExitsAsync(silo, 2, "--size", "volume", "create", "other", "--level", "raid1", "--disks", "2");
        await AssertExitsAsync(silo, 2, "(see 'cloudctl --help')", "volume", "frobnicate");
        await AssertExitsAsync(silo, 2, "NAME", "scrub");

        // Well formed, refused by the service: the volume does not exist.
        await AssertExitsAsync(silo, 1, "'nosuch' does not exist", "volume", "show", "nosuch");
        await AssertExitsAsync(silo, 1, "'nosuch' does not exist", "scrub", "nosuch");
        await AssertExitsAsync(silo, 1, "'nosuch' does not exist", "disk", "fail", "nosuch", "0");
    }

    [Fact]
    public async Task Scrub_ExitsThree_WhenItLeavesProblemsUnrepaired_AndZeroOnceRepairPutsThemRight()
    {
        using var dir = new TempDirectory();
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"));
        await Cloudctl.JsonAsync(
            silo, "volume", "create", Volume, "--size", "1MiB", "--level", "raid1", "--disks", "2", "--chunk", "4KiB",
            "--json");
        var image = Path.Combine(dir.Path, "image.bin");
        await File.WriteAllBytesAsync(image, [.. Enumerable.Range(0, ImageBytes).Select(i => (byte)(i * 7 + 1))]);
        await Cloudctl.JsonAsync(silo, "import", Volume, image, "--json"); // flushed before it returns
        var members = await MemberFilesAsync(silo);
        Assert.Equal(0, (await ScrubAsync(silo, repair: false)).ExitCode);

        // One copy's block corrupted on the member file itself: found, and left as it is without --repair.
        await FlipByteAsync(members[0], OnDiskFormat.DataOffsetBytes + 100);
        var found = await ScrubAsync(silo, repair: false);
        Assert.Equal(3, found.ExitCode);
        Assert.Equal(1, found.Result.GetProperty("checksumErrors").GetInt64());

        // --repair puts it right from the other copy: exit 0, and a scrub after it finds nothing.
        var repaired = await ScrubAsync(silo, repair: true);
        Assert.Equal(0, repaired.ExitCode);
        Assert.Equal(1, repaired.Result.GetProperty("repaired").GetInt64());
        Assert.Equal(0, (await ScrubAsync(silo, repair: false)).ExitCode);

        // The same block corrupted on both copies: nothing to repair it from, so --repair leaves it and exits 3.
        await FlipByteAsync(members[0], OnDiskFormat.DataOffsetBytes + 200);
        await FlipByteAsync(members[1], OnDiskFormat.DataOffsetBytes + 200);
        var lost = await ScrubAsync(silo, repair: true);
        Assert.Equal(3, lost.ExitCode);
        Assert.Equal(1, lost.Result.GetProperty("unrecoverable").GetInt64());
    }

    private static async Task AssertExitsAsync(SiloProcess silo, int expected, string errorNames, params string[] arguments)
    {
        var result = await Cloudctl.RunAsync(silo, arguments);
        Assert.True(
            result.ExitCode == expected,
            $"cloudctl {string.Join(' ', arguments)} exited {result.ExitCode}, not {expected}: {result.Error}");
        Assert.Contains(errorNames, result.Error, StringComparison.Ordinal);
    }

    /// <summary>Runs <c>scrub --json</c> (with <c>--repair</c> if asked) and returns its exit code and result.</summary>
    private static async Task<(int ExitCode, JsonElement Result)> ScrubAsync(SiloProcess silo, bool repair)
    {
        string[] arguments = repair ? ["scrub", Volume, "--repair", "--json"] : ["scrub", Volume, "--json"];
        var result = await Cloudctl.RunAsync(silo, arguments);
        Assert.True(
            result.ExitCode is 0 or 3,
            $"cloudctl {string.Join(' ', arguments)} exited {result.ExitCode}: {result.Error}\nsilo:\n{silo.Process.Output}");
        return (result.ExitCode, JsonDocument.Parse(result.Output).RootElement.Clone());
    }

    /// <summary>The member files of the volume, in member order.</summary>
    private static async Task<string[]> MemberFilesAsync(SiloProcess silo)
    {
        using var status = await Cloudctl.JsonAsync(silo, "volume", "show", Volume, "--json");
        return
        [
            .. status.RootElement.GetProperty("disks").EnumerateArray()
                .OrderBy(d => d.GetProperty("index").GetInt32())
                .Select(d => d.GetProperty("path").GetString()!)
                .Select(p => p.StartsWith("file:", StringComparison.Ordinal) ? p["file:".Length..] : p),
        ];
    }

    /// <summary>Inverts one byte of a member file behind the silo's back, as a decaying disk would.</summary>
    private static async Task FlipByteAsync(string path, long offsetBytes)
    {
        await using var file = File.Open(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        file.Position = offsetBytes;
        var b = file.ReadByte();
        file.Position = offsetBytes;
        file.WriteByte((byte)~b);
        await file.FlushAsync();
    }
}
