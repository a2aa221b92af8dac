using System.Diagnostics;
using Cloud.Storage.Devices;

namespace Cloud.Storage.Tests.Devices;

public sealed class FileBlockDeviceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-filedev-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(0)]
    [InlineData(int.MaxValue)]
    public async Task IoAfterDispose_FailsAsAFaultedTask_InlineOrQueued(int inlineIoMaxBytes)
    {
        var device = new FileBlockDevice(
            Path.Combine(_dir, $"d{inlineIoMaxBytes}.img"), 1 << 20)
        {
            InlineIoMaxBytes = inlineIoMaxBytes,
            InlineWriteMaxBytes = inlineIoMaxBytes,
        };
        await device.DisposeAsync();
        // Starting the I/O must not throw: callers start several member I/Os before awaiting any of them.
        ValueTask read = device.ReadAsync(0, new byte[4096]);
        ValueTask write = device.WriteAsync(0, new byte[4096]);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await read);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await write);
    }

    [Fact]
    public async Task ByDefault_AWriteOfAWholeRun_CompletesOnTheCallersThread_AndReadsBack()
    {
        await using var device = new FileBlockDevice(Path.Combine(_dir, "defaults.img"), 4 << 20);
        var run = new byte[FileBlockDevice.DefaultInlineWriteMaxBytes];
        new Random(3).NextBytes(run);
        // Completed on return: the pwritev ran here, with no hop to the thread pool and back.
        ValueTask write = device.WriteGatherAsync(0, [run.AsMemory(0, 1 << 20), run.AsMemory(1 << 20)]);
        Assert.True(write.IsCompletedSuccessfully);
        await write;
        ValueTask plain = device.WriteAsync(1 << 21, run);
        Assert.True(plain.IsCompletedSuccessfully);
        await plain;

        var back = new byte[run.Length];
        await device.ReadAsync(1 << 21, back);
        Assert.Equal(run, back);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(int.MaxValue)]
    public async Task GatherWrite_AndScatterRead_MoveTheSameBytesAsPlainIo_InlineOrQueued(int inlineIoMaxBytes)
    {
        await using var device = new FileBlockDevice(
            Path.Combine(_dir, $"v{inlineIoMaxBytes}.img"), 1 << 20)
        {
            InlineIoMaxBytes = inlineIoMaxBytes,
            InlineWriteMaxBytes = inlineIoMaxBytes,
        };
        var data = new byte[16384];
        new Random(9).NextBytes(data);
        await device.WriteGatherAsync(
            8192, [data.AsMemory(0, 4096), data.AsMemory(4096, 8192), data.AsMemory(12288, 4096)]);
        var plain = new byte[16384];
        await device.ReadAsync(8192, plain);
        Assert.Equal(data, plain);

        byte[] a = new byte[8192], b = new byte[4096], c = new byte[4096];
        await device.ReadScatterAsync(8192, [a, b, c]);
        Assert.Equal(data, a.Concat(b).Concat(c).ToArray());
    }

    [Fact]
    public async Task ScatterRead_WithAPieceThatIsNotWholeSectors_IsRefused_NamingIt()
    {
        await using var device = new FileBlockDevice(Path.Combine(_dir, "odd.img"), 1 << 20);
        var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(
            async () => await device.ReadScatterAsync(0, [new byte[4096], new byte[100]]));
        Assert.Contains("piece 1 is 100 bytes", e.Message);
        var past = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(
            async () => await device.WriteGatherAsync((1 << 20) - 4096, [new byte[4096], new byte[4096]]));
        Assert.Contains("end within", past.Message);
    }

    [Fact]
    public async Task NewFile_IsPreallocatedToCapacity()
    {
        var path = Path.Combine(_dir, "a.img");
        await using (var device = new FileBlockDevice(path, 4 << 20))
        {
            Assert.False(device.IsBlockDevice);
            Assert.Equal(4 << 20, device.CapacityBytes);
        }
        Assert.Equal(4 << 20, new FileInfo(path).Length);
    }

    [Fact]
    public async Task Reopen_WithoutCapacity_KeepsSizeAndData()
    {
        var path = Path.Combine(_dir, "b.img");
        var data = new byte[4096];
        new Random(5).NextBytes(data);
        await using (var device = new FileBlockDevice(path, 1 << 20))
        {
            await device.WriteAsync(8192, data);
            await device.FlushAsync();
        }
        await using (var device = new FileBlockDevice(path))
        {
            Assert.Equal(1 << 20, device.CapacityBytes);
            var back = new byte[4096];
            await device.ReadAsync(8192, back);
            Assert.Equal(data, back);
        }
    }

    [Fact]
    public void EmptyExistingFile_WithoutCapacity_IsRefused()
    {
        var path = Path.Combine(_dir, "c.img");
        File.WriteAllBytes(path, []);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new FileBlockDevice(path));
        Assert.Contains("empty", e.Message);
    }

    /// <summary>A loop device is a real block-device path; it needs root and a free loop device, as in CI.</summary>
    [Fact]
    public async Task BlockDevicePath_ReportsItsSize_AndRoundTrips()
    {
        var backing = Path.Combine(_dir, "loop.img");
        await using (var file = new FileBlockDevice(backing, 2 << 20)) { }
        var loop = TryLosetup(backing);
        if (loop is null)
        {
            // Not root, or a container without loop devices: nothing to attach, and the regular-file
            // path is covered by the other tests.
            return;
        }
        try
        {
            await using var device = new FileBlockDevice(loop);
            Assert.True(device.IsBlockDevice);
            Assert.Equal(2 << 20, device.CapacityBytes);
            var data = new byte[4096];
            new Random(9).NextBytes(data);
            await device.WriteAsync(4096, data);
            await device.FlushAsync();
            var back = new byte[4096];
            await device.ReadAsync(4096, back);
            Assert.Equal(data, back);
        }
        finally
        {
            Run("losetup", $"-d {loop}");
        }
    }

    private static string? TryLosetup(string file)
    {
        try
        {
            var output = Run("losetup", $"--find --show {file}");
            return output.StartsWith("/dev/", StringComparison.Ordinal) ? output : null;
        }
        catch (Exception) { return null; }
    }

    private static string Run(string tool, string args)
    {
        using var p = Process.Start(
            new ProcessStartInfo(tool, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return p.ExitCode == 0 ? output : "";
    }
}
