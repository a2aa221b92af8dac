using System.Diagnostics;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>
/// 512-byte I/O through the real silo (issue 13, item 6): NBD writes at odd sectors take the first server's
/// read-modify-write of their blocks; cloudctl refuses an offset that is not a multiple of 512 in one line.
/// </summary>
public sealed class SectorIoTests
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task QemuIo_512ByteWritesAtOddSectors_ReadBack_ThroughTheSiloEndpoint_AndTheSdk()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        using var dir = new TempDirectory();
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"));
        await using var client = await CloudClient.ConnectAsync(silo.Gateway);
        await client.CreateVolumeAsync(
            new VolumeSpec("r5", 16L << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));

        (long Sector, int Count, byte Pattern)[] writes = [(1, 1, 0x31), (3, 1, 0x33), (15, 3, 0x4f), (257, 1, 0x21)];
        var args = new List<string> { "-f", "raw", "-c", "write -P 0x5a 0 256k" };
        foreach (var (sector, count, pattern) in writes)
            args.AddRange(["-c", $"write -P 0x{pattern:x2} {sector * 512} {count * 512}"]);
        args.Add(silo.NbdUri("r5"));
        (await Tools.RunAsync(qemuIo, args)).AssertSuccess("qemu-io write");

        var verify = new List<string> { "-f", "raw" };
        foreach (var (sector, count, pattern) in writes)
            verify.AddRange(["-c", $"read -P 0x{pattern:x2} {sector * 512} {count * 512}"]);
        verify.AddRange(["-c", "read -P 0x5a 0 512", "-c", "read -P 0x5a 1024 512", "-c", "read -P 0x5a 2048 5632"]);
        verify.Add(silo.NbdUri("r5"));
        var r = (await Tools.RunAsync(qemuIo, verify)).AssertSuccess("qemu-io verify");
        Assert.DoesNotContain("Pattern verification failed", r.Output, StringComparison.Ordinal);

        var expected = new byte[256 << 10];
        Array.Fill(expected, (byte)0x5a);
        foreach (var (sector, count, pattern) in writes)
            expected.AsSpan((int)(sector * 512), count * 512).Fill(pattern);
        var volume = await client.OpenVolumeAsync("r5");
        var actual = new byte[expected.Length];
        await volume.ReadAsync(0, actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public async Task Cloudctl_OffsetNotAMultipleOf512_IsRefusedInOneLine_BeforeConnecting()
    {
        using var dir = new TempDirectory();
        var input = Path.Combine(dir.Path, "in.bin");
        await File.WriteAllBytesAsync(input, new byte[512]);
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // A gateway where nothing listens: the refusal must come before any connection attempt.
        foreach (var a in new[] { Repository.BuiltAssembly("client/cloudctl", "cloudctl.dll"), "--gateway",
            "127.0.0.1:1", "write", "vol", "--offset", "1000", "--from", input })
            info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(CommandTimeout);
        await process.WaitForExitAsync(timeout.Token);
        Assert.Equal(2, process.ExitCode);
        Assert.Equal("", await output);
        Assert.Equal(
            "cloudctl: --offset 1000 is not allowed; use a multiple of 512 (see 'cloudctl --help')",
            (await error).TrimEnd('\n'));
    }
}
