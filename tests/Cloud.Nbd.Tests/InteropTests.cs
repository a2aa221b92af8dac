using System.Diagnostics;
using System.Text.Json;
using Cloud.Storage.Volumes;
using Xunit.Abstractions;

namespace Cloud.Nbd.Tests;

/// <summary>
/// The NBD server against the clients people use: qemu-io, qemu-img, nbdinfo, nbdcopy, fio and nbdfuse. Each
/// test fails (never skips) when its tool is missing, and the nbdfuse ones also when the machine has no FUSE or loop
/// device. The volume is the engine's, served directly, with 512-byte sectors over its 4 KiB blocks.
/// </summary>
public sealed class InteropTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const long VolumeBytes = 64L << 20;

    private readonly string _dir = Directory.CreateTempSubdirectory("nbd-interop-").FullName;
    private SubBlockCountingVolume _volume = null!;
    private TestServer _server = null!;

    public async Task InitializeAsync()
    {
        _volume = new SubBlockCountingVolume(await TestVolumes.CreateAsync("vol", VolumeBytes));
        _server = await TestServer.StartAsync(_volume);
        output.WriteLine($"serving {_volume.GetType().Name} '{_volume.Name}' on {_server.Uri(_volume.Name)}");
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _volume.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private string Uri => _server.Uri(_volume.Name);

    private async Task<byte[]> VolumeBytesAsync(long offset, int length)
    {
        var b = new byte[length];
        await _volume.ReadAsync(offset, b);
        return b;
    }

    private string RandomImage(string name, long sizeBytes, int seed)
    {
        var path = Path.Combine(_dir, name);
        var rng = new Random(seed);
        var chunk = new byte[1 << 20];
        using var f = File.Create(path);
        for (long o = 0; o < sizeBytes; o += chunk.Length)
        {
            rng.NextBytes(chunk);
            // Leave some zero megabytes so sparse-aware copies (zero detection, trim) are exercised.
            if ((o >> 20) % 5 == 3)
            {
                Array.Clear(chunk);
            }
            f.Write(chunk, 0, (int)Math.Min(chunk.Length, sizeBytes - o));
        }
        return path;
    }

    private static void AssertSameFiles(string expected, string actual)
    {
        var a = File.ReadAllBytes(expected);
        var b = File.ReadAllBytes(actual);
        Assert.Equal(a.Length, b.Length);
        var diff = a.AsSpan().CommonPrefixLength(b);
        Assert.True(diff == a.Length, $"{actual} differs from {expected} at byte {diff}");
    }

    [Fact]
    public async Task QemuIo_PatternWrite_ReadVerifies()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        var r = (await Tools.RunAsync(qemuIo, ["-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M",
            "-c", "write -P 0xcd 1M 4k", "-c", "read -P 0xcd 1M 4k", "-c", "write -z 2M 64k", "-c", "read -P 0 2M 64k", "-c", "flush", Uri]))
            .AssertSuccess("qemu-io");
        output.WriteLine(r.Output);
        Assert.DoesNotContain("Pattern verification failed", r.Output);
        Assert.Contains("read 1048576/1048576 bytes at offset 0", r.Output);
        Assert.All(await VolumeBytesAsync(0, 1 << 20), b => Assert.Equal(0xab, b));
        Assert.All(await VolumeBytesAsync(1 << 20, 4096), b => Assert.Equal(0xcd, b));
    }

    [Fact]
    public async Task QemuIo_512ByteWriteInsideABlock_KeepsTheBlocksOtherSectors()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        var r = (await Tools.RunAsync(qemuIo, ["-f", "raw", "-c", "write -P 0x11 0 8k", "-c", "write -P 0x22 512 512", "-c", "read -P 0x22 512 512", "-c", "read -P 0x11 0 512", "-c", "read -P 0x11 1024 7k", Uri]))
            .AssertSuccess("qemu-io");
        Assert.DoesNotContain("Pattern verification failed", r.Output);
        var bytes = await VolumeBytesAsync(0, 8192);
        Assert.All(bytes.AsSpan(512, 512).ToArray(), b => Assert.Equal(0x22, b));
        Assert.All(bytes.AsSpan(0, 512).ToArray(), b => Assert.Equal(0x11, b));
        Assert.All(bytes.AsSpan(1024).ToArray(), b => Assert.Equal(0x11, b));
    }

    [Fact]
    public async Task QemuIo_512ByteWritesAtOddSectors_ReadBack_AndReachTheServerAsSectors()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        // Odd sectors of one block, of the next block, at a chunk's last sector, and three across a block boundary.
        (long Sector, int Count, byte Pattern)[] writes =
            [(1, 1, 0x31), (3, 1, 0x33), (9, 1, 0x39), (127, 1, 0x7f), (15, 3, 0x4f), (2049, 1, 0x21)];
        var args = new List<string> { "-f", "raw", "-c", "write -P 0x5a 0 2M" };
        foreach (var (sector, count, pattern) in writes)
            args.AddRange(["-c", $"write -P 0x{pattern:x2} {sector * 512} {count * 512}"]);
        foreach (var (sector, count, pattern) in writes)
            args.AddRange(["-c", $"read -P 0x{pattern:x2} {sector * 512} {count * 512}"]);
        args.AddRange(["-c", "read -P 0x5a 0 512", "-c", "read -P 0x5a 1024 512", "-c", "read -P 0x5a 5120 2048"]);
        args.Add(Uri);
        var writesBefore = _volume.SubBlockWrites;
        var r = (await Tools.RunAsync(qemuIo, args)).AssertSuccess("qemu-io");
        output.WriteLine(r.Output);
        Assert.DoesNotContain("Pattern verification failed", r.Output);
        Assert.Equal(writes.Length, _volume.SubBlockWrites - writesBefore);

        var expected = new byte[2 << 20];
        Array.Fill(expected, (byte)0x5a);
        foreach (var (sector, count, pattern) in writes)
            expected.AsSpan((int)(sector * 512), count * 512).Fill(pattern);
        Assert.Equal(expected, await VolumeBytesAsync(0, expected.Length));
    }

    [Fact]
    public async Task QemuImg_ConvertIntoTheVolumeAndBack_IsByteIdentical()
    {
        var qemuImg = Tools.Require("qemu-img", "qemu-utils");
        var image = RandomImage("in.img", _volume.CapacityBytes, 42);
        var back = Path.Combine(_dir, "out.img");
        (await Tools.RunAsync(qemuImg, ["convert", "-n", "-f", "raw", "-O", "raw", image, Uri]))
            .AssertSuccess("qemu-img convert in");
        (await Tools.RunAsync(qemuImg, ["convert", "-f", "raw", "-O", "raw", Uri, back]))
            .AssertSuccess("qemu-img convert out");
        AssertSameFiles(image, back);
        Assert.Equal(File.ReadAllBytes(image).AsSpan(0, 1 << 20).ToArray(), await VolumeBytesAsync(0, 1 << 20));
    }

    [Fact]
    public async Task Nbdcopy_InAndOut_IsByteIdentical()
    {
        var nbdcopy = Tools.Require("nbdcopy", "libnbd-bin");
        var image = RandomImage("in.img", _volume.CapacityBytes, 7);
        var back = Path.Combine(_dir, "out.img");
        (await Tools.RunAsync(nbdcopy, [image, Uri])).AssertSuccess("nbdcopy in");
        (await Tools.RunAsync(nbdcopy, [Uri, back])).AssertSuccess("nbdcopy out");
        AssertSameFiles(image, back);
    }

    [Fact]
    public async Task Nbdinfo_Json_ShowsSizeBlockSizesAndFlags()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        var r = (await Tools.RunAsync(nbdinfo, ["--json", Uri])).AssertSuccess("nbdinfo");
        output.WriteLine(r.Output);
        using var json = JsonDocument.Parse(r.Output);
        var export = json.RootElement.GetProperty("exports")[0];
        Assert.Equal(_volume.Name, export.GetProperty("export-name").GetString());
        Assert.Equal(_volume.CapacityBytes, export.GetProperty("export-size").GetInt64());
        Assert.Equal(_volume.SectorSizeBytes, export.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(512, export.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(
            (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)_volume.PreferredIoSizeBytes + 1) >> 1,
            export.GetProperty("block_size_preferred").GetInt32());
        Assert.True(export.GetProperty("block_size_maximum").GetInt64() >= 1 << 20);
        foreach (var flag in new[] { "can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn" })
        {
            Assert.True(export.GetProperty(flag).GetBoolean(), $"{flag} is not true:\n{r.Output}");
        }
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
    }

    [Fact]
    public async Task Fio_NbdEngine_RandomWritesVerifyWithCrc32c()
    {
        var fio = Tools.Require("fio", "fio");
        var job = Path.Combine(_dir, "verify.fio");
        File.WriteAllText(job, $"""
            [global]
            ioengine=nbd
            uri={Uri}
            size=32M
            iodepth=16
            verify=crc32c
            do_verify=1
            verify_fatal=1
            randrepeat=1

            [randwrite-verify]
            rw=randwrite
            bs=4k

            [seqwrite-verify]
            stonewall
            rw=write
            bs=1M
            offset=32M
            """);
        var r = (await Tools.RunAsync(fio, ["--output-format=json", job])).AssertSuccess("fio");
        var jsonStart = r.Output.IndexOf('{');
        using var json = JsonDocument.Parse(r.Output[jsonStart..]);
        foreach (var j in json.RootElement.GetProperty("jobs").EnumerateArray())
        {
            Assert.Equal(0, j.GetProperty("error").GetInt32());
            Assert.True(j.GetProperty("read").GetProperty("io_bytes").GetInt64() > 0, "fio verified nothing");
        }
    }

    [Fact]
    public Task Nbdfuse_Losetup_Ext4_MountWriteUnmountFsckClean() => Ext4OverNbdfuseAsync(["--sector-size", "4096"], 4096);

    /// <summary>
    /// The issue's case: a plain losetup (512-byte sectors), where mkfs.ext4 used to fail with "request is
    /// unaligned". The engine now reads and rewrites the 4 KiB blocks the file system's sector writes cover in part.
    /// </summary>
    [Fact]
    public async Task Nbdfuse_LosetupWithDefault512ByteSectors_Ext4_MountWriteUnmountFsckClean()
    {
        await Ext4OverNbdfuseAsync([], 512);
        output.WriteLine(
            $"requests inside a block that reached the server: {_volume.SubBlockReads} reads, {_volume.SubBlockWrites} writes");
    }

    private async Task Ext4OverNbdfuseAsync(string[] losetupOptions, int sectorBytes)
    {
        foreach (var device in new[] { "/dev/fuse", "/dev/loop-control" })
        {
            Assert.True(
                File.Exists(device),
                $"{device} does not exist on this machine, so no FUSE file or loop device can be made");
        }
        var nbdfuse = Tools.Require("nbdfuse", "libnbd-bin");
        var losetup = Tools.Require("losetup", "util-linux");
        var mkfs = Tools.Require("mkfs.ext4", "e2fsprogs");
        var fsck = Tools.Require("e2fsck", "e2fsprogs");
        var mount = Tools.Require("mount", "mount");
        var umount = Tools.Require("umount", "mount");
        var fusermount = Tools.Require("fusermount3", "fuse3");

        var fuseDir = Directory.CreateDirectory(Path.Combine(_dir, "fuse")).FullName;
        var mountDir = Directory.CreateDirectory(Path.Combine(_dir, "mnt")).FullName;
        var fuseFile = Path.Combine(fuseDir, "nbd");
        var psi = new ProcessStartInfo(nbdfuse)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false
        };
        foreach (var a in new[] { fuseDir, Uri })
        {
            psi.ArgumentList.Add(a);
        }
        using var fuse = Process.Start(psi)!;
        string? loop = null;
        var mounted = false;
        try
        {
            // nbdfuse serves in the foreground; the file appears once the FUSE mount is up.
            for (var i = 0; i < 200
                && !(File.Exists(fuseFile) && new FileInfo(fuseFile).Length == _volume.CapacityBytes); i++)
            {
                Assert.False(
                    fuse.HasExited,
                    $"nbdfuse exited with {(fuse.HasExited ? fuse.ExitCode : 0)}: {(fuse.HasExited ? fuse.StandardError.ReadToEnd() : "")}");
                await Task.Delay(50);
            }
            Assert.True(File.Exists(fuseFile), "nbdfuse did not present its file");
            Assert.Equal(_volume.CapacityBytes, new FileInfo(fuseFile).Length);

            loop = (await Tools.RunAsync(losetup, ["--find", "--show", .. losetupOptions, fuseFile]))
                .AssertSuccess("losetup")
                .Output.Trim();
            output.WriteLine($"loop device {loop}");
            var blockdev = Tools.Require("blockdev", "util-linux");
            var sectorSize = (await Tools.RunAsync(blockdev, ["--getss", loop])).AssertSuccess("blockdev --getss");
            Assert.Equal(sectorBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), sectorSize.Output.Trim());
            (await Tools.RunAsync(mkfs, ["-F", "-q", "-E", "nodiscard", loop])).AssertSuccess("mkfs.ext4");
            (await Tools.RunAsync(mount, ["-t", "ext4", loop, mountDir])).AssertSuccess("mount");
            mounted = true;
            var rng = new Random(5);
            var files = new Dictionary<string, byte[]>();
            for (var i = 0; i < 8; i++)
            {
                var content = new byte[rng.Next(1, 3 << 20)];
                rng.NextBytes(content);
                var path = Path.Combine(mountDir, $"file{i}.bin");
                await File.WriteAllBytesAsync(path, content);
                files[path] = content;
            }
            foreach (var (path, content) in files)
            {
                Assert.Equal(content, await File.ReadAllBytesAsync(path));
            }
            (await Tools.RunAsync(umount, [mountDir])).AssertSuccess("umount");
            mounted = false;
            var check = (await Tools.RunAsync(fsck, ["-f", "-n", loop])).AssertSuccess("e2fsck -f -n");
            output.WriteLine(check.Output);
            // Mount again and read the files back through a fresh page cache.
            (await Tools.RunAsync(losetup, ["-d", loop])).AssertSuccess("losetup -d");
            loop = (await Tools.RunAsync(losetup, ["--find", "--show", .. losetupOptions, fuseFile]))
                .AssertSuccess("losetup")
                .Output.Trim();
            (await Tools.RunAsync(mount, ["-t", "ext4", "-o", "ro", loop, mountDir])).AssertSuccess("mount ro");
            mounted = true;
            foreach (var (path, content) in files)
            {
                Assert.Equal(content, await File.ReadAllBytesAsync(path));
            }
        }
        finally
        {
            if (mounted)
            {
                await Tools.RunAsync(umount, [mountDir]);
            }
            if (loop is not null)
            {
                await Tools.RunAsync(losetup, ["-d", loop]);
            }
            await Tools.RunAsync(fusermount, ["-u", fuseDir]);
            if (!fuse.WaitForExit(TimeSpan.FromSeconds(20)))
            {
                fuse.Kill();
            }
        }
    }
}
