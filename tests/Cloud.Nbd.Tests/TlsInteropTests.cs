using System.Text.Json;
using Cloud.Storage.Volumes;
using Xunit.Abstractions;

namespace Cloud.Nbd.Tests;

/// <summary>
/// NBD over TLS against the clients people use (qemu-img, qemu-io, nbdinfo, nbdcopy, fio), with x509 certificates
/// and with TLS-PSK keys made by psktool, on a server that requires TLS, and per-volume access: alice may write
/// "vol"; bob may only read "vol" and may write "bobs". Each client is also shown refused without the key, with
/// the wrong key, and on another identity's volume.
/// </summary>
public sealed class TlsInteropTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const long VolumeBytes = 32L << 20;

    private readonly string _dir = Directory.CreateTempSubdirectory("nbd-tls-").FullName;
    private TlsTestKeys _keys = null!;
    private IBlockVolume _volume = null!;
    private MemoryVolume _bobs = null!;

    public async Task InitializeAsync()
    {
        _keys = await TlsTestKeys.CreateAsync(Path.Combine(_dir, "keys"));
        _volume = await TestVolumes.CreateAsync("vol", VolumeBytes);
        _bobs = new MemoryVolume("bobs", 8L << 20);
    }

    public async Task DisposeAsync()
    {
        if (_volume is IAsyncDisposable d)
        {
            await d.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }

    private static readonly NbdAccessList Grants = new(
    [
        new NbdGrantEntry("alice", "vol", ReadOnly: false),
        new NbdGrantEntry("bob", "vol", ReadOnly: true),
        new NbdGrantEntry("bob", "bobs", ReadOnly: false),
    ]);

    private async Task<TestServer> StartPskAsync()
    {
        var server = await TestServer.StartAsync(
            o =>
            {
                o.Tls = NbdTlsMode.Require;
                o.TlsPskPath = _keys.ServerPskPath;
            },
            _volume,
            _bobs);
        server.Resolver.Access = Grants;
        return server;
    }

    private async Task<TestServer> StartX509Async(bool verifyClients = true)
    {
        var server = await TestServer.StartAsync(
            o =>
            {
                o.Tls = NbdTlsMode.Require;
                o.TlsCertificatePath = _keys.ServerCertificatePath;
                o.TlsKeyPath = _keys.ServerKeyPath;
                o.TlsCaPath = verifyClients ? _keys.CaPath : null;
            },
            _volume,
            _bobs);
        server.Resolver.Access = Grants;
        return server;
    }

    private string PskUri(TestServer s, string user, string export, string keysOf) =>
        $"nbds://{user}@127.0.0.1:{s.Port}/{export}?tls-psk-file={_keys.PskFile(keysOf)}";

    private string X509Uri(TestServer s, string client, string export) =>
        $"nbds://127.0.0.1:{s.Port}/{export}?tls-certificates={_keys.X509Dir(client)}";

    private static string[] QemuPsk(string dir, string user) =>
        ["--object", $"tls-creds-psk,id=tls0,endpoint=client,dir={dir},username={user}"];

    private static string[] QemuX509(string dir) => ["--object", $"tls-creds-x509,id=tls0,endpoint=client,dir={dir}"];

    private static string QemuNbd(TestServer s, string export, bool tls = true) =>
        $"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={s.Port},export={export}"
        + (tls ? ",tls-creds=tls0" : "");

    private string RandomImage(string name, long sizeBytes, int seed)
    {
        var path = Path.Combine(_dir, name);
        var bytes = new byte[sizeBytes];
        new Random(seed).NextBytes(bytes);
        bytes.AsSpan(1 << 20, 1 << 20).Clear();
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void AssertSameFiles(string expected, string actual)
    {
        var a = File.ReadAllBytes(expected);
        var b = File.ReadAllBytes(actual);
        Assert.Equal(a.Length, b.Length);
        var same = a.AsSpan().CommonPrefixLength(b);
        Assert.True(same == a.Length, $"{actual} differs from {expected} at byte {same}");
    }

    private Tools.Result Refused(Tools.Result r, string what, params string[] anyOf)
    {
        output.WriteLine($"{what}: exit {r.ExitCode}\n{r.Output}");
        Assert.True(r.ExitCode != 0, $"{what} succeeded but should have been refused:\n{r.Output}");
        Assert.True(
            anyOf.Any(s => r.Output.Contains(s, StringComparison.OrdinalIgnoreCase)),
            $"{what} failed without saying any of [{string.Join(", ", anyOf)}]:\n{r.Output}");
        return r;
    }

    [Fact]
    public async Task QemuImg_ConvertInAndOut_OverPsk_IsByteIdentical()
    {
        var qemuImg = Tools.Require("qemu-img", "qemu-utils");
        await using var server = await StartPskAsync();
        var image = RandomImage("in.img", _volume.CapacityBytes, 42);
        var back = Path.Combine(_dir, "out.img");
        (await Tools.RunAsync(qemuImg,
        [
            "convert", "-n", .. QemuPsk(_keys.PskDir("alice"), "alice"), "-f", "raw", "--target-image-opts",
            image, QemuNbd(server, "vol"),
        ])).AssertSuccess("qemu-img convert in");
        (await Tools.RunAsync(qemuImg,
        [
            "convert", .. QemuPsk(_keys.PskDir("alice"), "alice"), "--image-opts", QemuNbd(server, "vol"),
            "-O", "raw", back,
        ])).AssertSuccess("qemu-img convert out");
        AssertSameFiles(image, back);
    }

    [Fact]
    public async Task QemuImg_WithoutKey_WithWrongKey_OrOnAnotherIdentitysVolume_IsRefused()
    {
        var qemuImg = Tools.Require("qemu-img", "qemu-utils");
        await using var server = await StartPskAsync();
        Refused(
            await Tools.RunAsync(qemuImg, ["info", "--image-opts", QemuNbd(server, "vol", tls: false)]),
            "qemu-img without TLS",
            "TLS");
        Refused(
            await Tools.RunAsync(qemuImg,
                ["info", .. QemuPsk(_keys.PskDir("wrong"), "alice"), "--image-opts", QemuNbd(server, "vol")]),
            "qemu-img with alice's name and another key",
            "TLS", "handshake", "decrypt", "MAC");
        Refused(
            await Tools.RunAsync(qemuImg,
                ["info", .. QemuPsk(_keys.PskDir("alice"), "alice"), "--image-opts", QemuNbd(server, "bobs")]),
            "qemu-img as alice on bob's volume",
            "no volume named 'bobs'");
    }

    [Fact]
    public async Task QemuIo_OverX509WithClientCertificate_WritesAndReadsBack_AndReadOnlyGrantRefusesWrites()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        await using var server = await StartX509Async();
        var r = (await Tools.RunAsync(qemuIo,
        [
            .. QemuX509(_keys.X509Dir("alice")), "--image-opts", "-c", "write -P 0xab 0 1M", "-c",
            "read -P 0xab 0 1M", "-c", "flush", QemuNbd(server, "vol"),
        ])).AssertSuccess("qemu-io as alice");
        Assert.DoesNotContain("Pattern verification failed", r.Output);
        var bytes = new byte[1 << 20];
        await _volume.ReadAsync(0, bytes);
        Assert.All(bytes, b => Assert.Equal(0xab, b));

        // Bob's grant is read-only: qemu sees a read-only export and reads, but may not write.
        (await Tools.RunAsync(qemuIo,
        [
            .. QemuX509(_keys.X509Dir("bob")), "-r", "--image-opts", "-c", "read -P 0xab 0 1M",
            QemuNbd(server, "vol"),
        ])).AssertSuccess("qemu-io -r as bob");
        Refused(
            await Tools.RunAsync(qemuIo,
            [
                .. QemuX509(_keys.X509Dir("bob")), "--image-opts", "-c", "write -P 0xcd 0 4k",
                QemuNbd(server, "vol"),
            ]),
            "qemu-io write as bob (read-only grant)",
            "Permission denied", "read-only", "Operation not permitted");
        // Without a client certificate the server's CA check refuses the handshake.
        Refused(
            await Tools.RunAsync(qemuIo,
                [.. QemuX509(_keys.X509Dir("anonymous")), "--image-opts", "-c", "read 0 4k", QemuNbd(server, "vol")]),
            "qemu-io without a client certificate",
            "TLS", "certificate", "handshake");
    }

    [Fact]
    public async Task Nbdinfo_ListOverPsk_ShowsOnlyTheClientsVolumes_AndReadOnlyGrants()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        await using var server = await StartPskAsync();
        var alice = (await Tools.RunAsync(nbdinfo, ["--list", "--json", PskUri(server, "alice", "", "alice")]))
            .AssertSuccess("nbdinfo --list as alice");
        Assert.Equal(["vol"], ExportNames(alice.Output));
        var bob = (await Tools.RunAsync(nbdinfo, ["--list", "--json", PskUri(server, "bob", "", "bob")]))
            .AssertSuccess("nbdinfo --list as bob");
        Assert.Equal(["bobs", "vol"], ExportNames(bob.Output));

        var info = (await Tools.RunAsync(nbdinfo, ["--json", PskUri(server, "bob", "vol", "bob")]))
            .AssertSuccess("nbdinfo as bob");
        using var json = JsonDocument.Parse(info.Output);
        Assert.True(json.RootElement.GetProperty("exports")[0].GetProperty("is_read_only").GetBoolean());

        Refused(
            await Tools.RunAsync(nbdinfo, [$"nbd://127.0.0.1:{server.Port}/vol"]),
            "nbdinfo without TLS",
            "TLS");
        Refused(
            await Tools.RunAsync(nbdinfo, [PskUri(server, "alice", "vol", "wrong")]),
            "nbdinfo with alice's name and another key",
            "TLS", "handshake", "decrypt");
        Refused(
            await Tools.RunAsync(nbdinfo, [PskUri(server, "alice", "bobs", "alice")]),
            "nbdinfo as alice on bob's volume",
            "for export: bobs");
    }

    [Fact]
    public async Task Nbdinfo_OverX509_NegotiatesAes128Gcm_TheCheapestCipherForGnutlsAndOpenSsl()
    {
        // gnutls (libnbd, qemu) offers AES-256-GCM before AES-128-GCM; the server's policy puts AES-128-GCM first,
        // which costs about 30% less per byte on both ends (docs/NBD.md, "Over TLS"). libnbd's debug output names
        // the session's cipher.
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        await using var server = await StartX509Async();
        var r = (await Tools.RunAsync("/usr/bin/env", ["LIBNBD_DEBUG=1", nbdinfo, X509Uri(server, "alice", "vol")]))
            .AssertSuccess("nbdinfo over x509");
        output.WriteLine(r.Output);
        Assert.Contains("AES-128-GCM", r.Output, StringComparison.Ordinal);
    }

    private static List<string> ExportNames(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return [.. doc.RootElement.GetProperty("exports").EnumerateArray()
            .Select(e => e.GetProperty("export-name").GetString()!).Order(StringComparer.Ordinal)];
    }

    [Fact]
    public async Task Nbdcopy_InAndOut_OverX509_IsByteIdentical_AndRefusedWithoutClientCertificate()
    {
        var nbdcopy = Tools.Require("nbdcopy", "libnbd-bin");
        await using var server = await StartX509Async();
        var image = RandomImage("in.img", _volume.CapacityBytes, 7);
        var back = Path.Combine(_dir, "out.img");
        (await Tools.RunAsync(nbdcopy, [image, X509Uri(server, "alice", "vol")])).AssertSuccess("nbdcopy in");
        (await Tools.RunAsync(nbdcopy, [X509Uri(server, "alice", "vol"), back])).AssertSuccess("nbdcopy out");
        AssertSameFiles(image, back);
        Refused(
            await Tools.RunAsync(nbdcopy, [X509Uri(server, "anonymous", "vol"), back]),
            "nbdcopy without a client certificate",
            "TLS", "certificate", "handshake");
        Refused(
            await Tools.RunAsync(nbdcopy, [image, X509Uri(server, "bob", "vol")]),
            "nbdcopy into bob's read-only grant",
            "read-only", "read only", "Operation not permitted", "Permission denied");
    }

    [Fact]
    public async Task Fio_NbdEngineOverX509_RandomWritesVerify_AndRefusedWithoutClientCertificate()
    {
        // fio's nbd engine does not let libnbd read files named in the URI ("local file access (tls-psk-file) is not
        // allowed", the same for tls-certificates), so it cannot use a PSK file at all; for x509 libnbd falls back
        // to its default certificate directory, $HOME/.pki/libnbd, which it reads only for a user other than root
        // (root's is /etc/pki/libnbd, not ours to write): so fio runs as nobody with HOME in the test's directory.
        var fio = Tools.Require("fio", "fio");
        await using var server = await StartX509Async();
        var job = Path.Combine(_dir, "verify.fio");
        await File.WriteAllTextAsync(job, $"""
            [global]
            ioengine=nbd
            uri=nbds://127.0.0.1:{server.Port}/vol
            size=16M
            iodepth=16
            verify=crc32c
            do_verify=1
            verify_fatal=1
            verify_state_save=0
            randrepeat=1

            [randwrite-verify]
            rw=randwrite
            bs=4k

            [seqwrite-verify]
            stonewall
            rw=write
            bs=1M
            offset=16M
            """);
        var r = (await RunFioAsync(fio, "alice", job)).AssertSuccess("fio as alice");
        using var json = JsonDocument.Parse(r.Output[r.Output.IndexOf('{')..]);
        foreach (var j in json.RootElement.GetProperty("jobs").EnumerateArray())
        {
            Assert.Equal(0, j.GetProperty("error").GetInt32());
            Assert.True(j.GetProperty("read").GetProperty("io_bytes").GetInt64() > 0, "fio verified nothing");
        }
        Refused(await RunFioAsync(fio, "anonymous", job), "fio without a client certificate", "TLS", "handshake");
    }

    /// <summary>Runs fio with <paramref name="client"/>'s certificates in libnbd's default directory.</summary>
    private async Task<Tools.Result> RunFioAsync(string fio, string client, string job)
    {
        var home = Path.Combine(_dir, "home-" + client);
        var pki = Path.Combine(home, ".pki", "libnbd");
        Directory.CreateDirectory(pki);
        foreach (var file in Directory.GetFiles(_keys.X509Dir(client)))
        {
            File.Copy(file, Path.Combine(pki, Path.GetFileName(file)), overwrite: true);
        }
        if (OperatingSystem.IsWindows() || Environment.UserName != "root")
        {
            return await Tools.RunAsync("/usr/bin/env", ["HOME=" + home, fio, "--output-format=json", job]);
        }
        // Everything nobody needs to read: the test's directory tree (made 0700) and the job.
        foreach (var path in Directory.GetFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Append(_dir))
        {
            File.SetUnixFileMode(path, Directory.Exists(path)
                ? UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
                    | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute
                : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        }
        var setpriv = Tools.Require("setpriv", "util-linux");
        return await Tools.RunAsync(
            setpriv,
            ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/env", "HOME=" + home, fio,
                "--output-format=json", job],
            workingDirectory: home);
    }
}
