using System.Diagnostics;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Xunit.Abstractions;

namespace Cloud.Nbd.Tests;

/// <summary>
/// bench/raid5-floor, the nbdkit plugin that `bench/nbd.sh` (NBD_BENCH_FLOOR) measures as the floor of Cloud's per-byte
/// RAID-5 work. Its figures mean something only if it does that work: these tests build it with gcc, drive it with
/// nbdcopy and qemu-io, and check its member files with Cloud's own format code (layout, parity, every block's
/// checksum entry), and that it refuses a block whose checksum does not match.
/// </summary>
public sealed class RaidFloorPluginTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int MemberMib = 4;
    private const int Chunk = 65536;
    private const long VolumeBytes = 4L * MemberMib << 20;
    private const long DataOffset = 1 << 20;

    private readonly string _dir = Directory.CreateTempSubdirectory("raid5-floor-").FullName;
    private string _plugin = "";

    public async Task InitializeAsync()
    {
        var gcc = Tools.Require("gcc", "gcc");
        foreach (var (header, package) in new[]
            { ("nbdkit-plugin.h", "nbdkit-plugin-dev"), ("isa-l/raid.h", "libisal-dev"), ("xxhash.h", "libxxhash-dev") })
            Assert.True(File.Exists($"/usr/include/{header}"), $"/usr/include/{header} is missing; install '{package}' (test.sh does).");
        _plugin = Path.Combine(_dir, "raid5floor.so");
        (await Tools.RunAsync(gcc, ["-std=gnu11", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", _plugin,
            Path.Combine(Repository.Root, "bench", "raid5-floor", "raid5floor.c"), "-lisal"]))
            .AssertSuccess("gcc raid5floor.c");
    }

    public Task DisposeAsync()
    {
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    /// <summary>nbdkit serving the plugin on a Unix socket; disposing it stops that process by its PID.</summary>
    private sealed class Server : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly System.Text.StringBuilder _log = new();

        public Server(string plugin, string members, string socket, IEnumerable<string> parameters)
        {
            var psi = new ProcessStartInfo(Tools.Require("nbdkit", "nbdkit"))
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { "-f", "-U", socket, plugin, $"dir={members}", $"member-mib={MemberMib}" }
                .Concat(parameters))
                psi.ArgumentList.Add(a);
            _process = Process.Start(psi)!;
            _process.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
            _process.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
            _process.BeginErrorReadLine();
            _process.BeginOutputReadLine();
            Uri = $"nbd+unix:///?socket={socket}";
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!File.Exists(socket))
            {
                Assert.False(_process.HasExited, $"nbdkit exited:\n{Log}");
                Assert.True(DateTime.UtcNow < deadline, $"nbdkit did not listen within 30 s:\n{Log}");
                Thread.Sleep(50);
            }
        }

        public string Uri { get; }

        public string Log { get { lock (_log) return _log.ToString(); } }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited) _process.Kill();
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
    }

    private (string Members, string Socket) NewVolume(string name)
    {
        var members = Path.Combine(_dir, name);
        Directory.CreateDirectory(members);
        return (members, Path.Combine(_dir, name + ".sock"));
    }

    /// <summary>
    /// Fills the volume with nbdcopy (whole-stripe runs), then rewrites parts of stripes with qemu-io (the plugin's
    /// read-modify-write), reads every byte back and compares. Returns the volume's expected bytes.
    /// </summary>
    private async Task<byte[]> WriteAndReadBackAsync(string uri)
    {
        var image = new byte[VolumeBytes];
        new Random(7).NextBytes(image);
        var imagePath = Path.Combine(_dir, "in.img");
        await File.WriteAllBytesAsync(imagePath, image);
        (await Tools.RunAsync(Tools.Require("nbdcopy", "libnbd-bin"), [imagePath, uri])).AssertSuccess("nbdcopy in");

        // One block, a block at a chunk's end, a range across a chunk boundary, one across a stripe boundary.
        (long Offset, int Length, byte Pattern)[] writes =
            [(4096, 4096, 0x11), (Chunk - 4096, 4096, 0x22), (3 * Chunk - 8192, 16384, 0x33), (4 * Chunk - 4096, 12288, 0x44)];
        var args = new List<string> { "-f", "raw" };
        foreach (var (offset, length, pattern) in writes)
        {
            args.AddRange(["-c", $"write -P 0x{pattern:x2} {offset} {length}"]);
            image.AsSpan((int)offset, length).Fill(pattern);
        }
        args.Add(uri);
        (await Tools.RunAsync(Tools.Require("qemu-io", "qemu-utils"), args)).AssertSuccess("qemu-io");

        var backPath = Path.Combine(_dir, "out.img");
        (await Tools.RunAsync(Tools.Require("nbdcopy", "libnbd-bin"), [uri, backPath])).AssertSuccess("nbdcopy out");
        var back = await File.ReadAllBytesAsync(backPath);
        Assert.Equal(image.Length, back.Length);
        var same = image.AsSpan().CommonPrefixLength(back);
        Assert.True(same == image.Length, $"the volume differs from what was written at byte {same}");
        return image;
    }

    [Fact]
    public async Task SlotsLayout_WritesCloudsFormat_DataParityAndEveryChecksum()
    {
        var (members, socket) = NewVolume("slots");
        byte[] image;
        await using (var server = new Server(_plugin, members, socket, ["layout=slots"]))
            image = await WriteAndReadBackAsync(server.Uri);

        AssertDataAndParity(members, image, OnDiskFormat.ChunkStrideBytes(Chunk), "layout=slots", checksums: true);
    }

    /// <summary>
    /// Every data chunk of the member files in <paramref name="members"/> where Cloud's layout (chunks
    /// <paramref name="stride"/> apart) puts it, holding <paramref name="image"/>'s bytes, every parity chunk the XOR of
    /// its stripe's data chunks, and with <paramref name="checksums"/> every block's metadata entry.
    /// </summary>
    private static void AssertDataAndParity(string members, byte[] image, long stride, string what, bool checksums)
    {
        var stripes = VolumeBytes / (4 * Chunk);
        var layout = new StripeLayout(new VolumeGeometry(RaidLevel.Raid5, 5, Chunk), stripes, DataOffset, stride);
        var files = Enumerable.Range(0, 5).Select(m => File.ReadAllBytes(Path.Combine(members, $"member{m}"))).ToArray();
        for (long s = 0; s < stripes; s++)
        {
            var parity = new byte[Chunk];
            for (var d = 0; d < 4; d++)
            {
                var chunk = files[layout.DataMember(s, d)].AsSpan((int)layout.MemberOffsetBytes(s, 0), Chunk);
                Assert.True(chunk.SequenceEqual(image.AsSpan((int)(s * 4 * Chunk + d * Chunk), Chunk)),
                    $"{what}: stripe {s} data chunk {d} is not where Cloud's layout puts it");
                for (var i = 0; i < Chunk; i++) parity[i] ^= chunk[i];
                if (checksums)
                    AssertEveryBlockChecks(files[layout.DataMember(s, d)], layout, s, $"stripe {s} data chunk {d}");
            }
            var p = layout.ParityMember(s);
            Assert.True(files[p].AsSpan((int)layout.MemberOffsetBytes(s, 0), Chunk).SequenceEqual(parity),
                $"{what}: stripe {s}'s parity chunk is not the XOR of its data chunks");
            if (checksums) AssertEveryBlockChecks(files[p], layout, s, $"stripe {s} parity chunk");
        }
    }

    private static void AssertEveryBlockChecks(byte[] member, StripeLayout layout, long stripe, string what)
    {
        var chunk = member.AsSpan((int)layout.MemberOffsetBytes(stripe, 0), Chunk);
        var meta = member.AsSpan((int)layout.MemberOffsetBytes(stripe, Chunk), OnDiskFormat.MetadataBytes(Chunk));
        for (var r = 0; r < Chunk / 4096; r++)
        {
            var (timestamp, checksum) = OnDiskFormat.ReadEntry(meta, r);
            Assert.True(timestamp > 0 && checksum != 0, $"{what} block {r} has no metadata entry");
            Assert.True(OnDiskFormat.Verify(chunk.Slice(r * 4096, 4096), meta, r), $"{what} block {r} does not verify");
        }
    }

    [Fact]
    public async Task ABlockThatNoLongerMatchesItsChecksum_FailsTheRead()
    {
        var (members, socket) = NewVolume("corrupt");
        await using var server = new Server(_plugin, members, socket, ["layout=slots"]);
        await WriteAndReadBackAsync(server.Uri);

        // Stripe 0's data chunk 0 sits on the member after its parity member (left-symmetric: parity on member 4).
        await using (var f = new FileStream(Path.Combine(members, "member0"), FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = DataOffset + 5000;
            var b = f.ReadByte();
            f.Position = DataOffset + 5000;
            f.WriteByte((byte)(b ^ 0xff));
        }
        var r = await Tools.RunAsync(Tools.Require("nbdcopy", "libnbd-bin"), [server.Uri, Path.Combine(_dir, "bad.img")]);
        Assert.NotEqual(0, r.ExitCode);
        const string expected = "stripe 0 chunk 0 block 1 does not match its checksum";
        for (var i = 0; i < 100 && !server.Log.Contains(expected); i++) await Task.Delay(50);
        Assert.Contains(expected, server.Log);
    }

    [Theory]
    [InlineData("layout=contiguous")]
    [InlineData("layout=md")]
    [InlineData("checksums=no")]
    public async Task OtherVariants_KeepTheDataAndTheParity(string parameter)
    {
        var (members, socket) = NewVolume(parameter.Replace('=', '-'));
        byte[] image;
        await using (var server = new Server(_plugin, members, socket, [parameter]))
            image = await WriteAndReadBackAsync(server.Uri);

        var stride = parameter.StartsWith("layout=") ? Chunk : OnDiskFormat.ChunkStrideBytes(Chunk);
        AssertDataAndParity(members, image, stride, parameter, checksums: false);
        output.WriteLine($"{parameter}: {VolumeBytes / (4 * Chunk)} stripes checked");
    }

    [Fact]
    public async Task ABadParameter_GetsOneLineNamingWhatIsAllowed()
    {
        var (members, socket) = NewVolume("bad");
        var r = await Tools.RunAsync(Tools.Require("nbdkit", "nbdkit"),
            ["-f", "-U", socket, _plugin, $"dir={members}", $"member-mib={MemberMib}", "layout=raid10"]);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("layout 'raid10' is not allowed; use slots, contiguous or md", r.Output);
        Assert.DoesNotContain("Unhandled", r.Output);
    }
}
