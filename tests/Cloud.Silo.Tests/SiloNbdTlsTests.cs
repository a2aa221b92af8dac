using System.Globalization;
using System.Text.Json;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>
/// The silo's NBD endpoint with TLS required and per-volume access managed by <c>cloudctl access</c>: real clients
/// (nbdinfo, qemu-io) with psktool keys, and the silo's one-line refusals of bad TLS settings.
/// </summary>
public sealed class SiloNbdTlsTests
{
    private static string Psk(SiloProcess silo, TlsTestKeys keys, string user, string export) =>
        $"nbds://{user}@127.0.0.1:{silo.NbdPort}/{export}?tls-psk-file={keys.PskFile(user)}";

    private static List<string> ExportNames(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return [.. doc.RootElement.GetProperty("exports").EnumerateArray()
            .Select(e => e.GetProperty("export-name").GetString()!).Order(StringComparer.Ordinal)];
    }

    [Fact]
    public async Task TlsRequired_GrantsFromCloudctl_DecideWhatEachPskIdentitySeesOpensAndWrites()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        using var dir = new TempDirectory();
        var keys = await TlsTestKeys.CreateAsync(Path.Combine(dir.Path, "keys"));
        await using var silo = await SiloProcess.StartAsync(
            Path.Combine(dir.Path, "data"),
            environment: new Dictionary<string, string>
            {
                ["Nbd__Tls"] = "require",
                ["Nbd__TlsPskPath"] = keys.ServerPskPath,
            });
        foreach (var volume in new[] { "shared", "private" })
            await Cloudctl.JsonAsync(silo, "--json", "volume", "create", volume, "--size", "8MiB", "--level", "raid1",
                "--disks", "2");
        await Cloudctl.JsonAsync(silo, "--json", "access", "grant", "alice", "private");
        await Cloudctl.JsonAsync(silo, "--json", "access", "grant", "bob", "private", "--read-only");
        using (var list = await Cloudctl.JsonAsync(silo, "--json", "access", "list"))
        {
            var grants = list.RootElement.EnumerateArray()
                .Select(g => $"{g.GetProperty("identity").GetString()}:{g.GetProperty("volume").GetString()}:{g.GetProperty("readOnly").GetBoolean()}")
                .ToList();
            Assert.Equal(["alice:private:False", "bob:private:True"], grants);
        }

        // "shared" has no grants, so every identity sees it; "private" only the identities granted.
        var alice = (await Tools.RunAsync(nbdinfo, ["--list", "--json", Psk(silo, keys, "alice", "")]))
            .AssertSuccess("nbdinfo --list as alice");
        Assert.Equal(["private", "shared"], ExportNames(alice.Output));
        (await Tools.RunAsync(qemuIo,
        [
            "--object", $"tls-creds-psk,id=tls0,endpoint=client,dir={keys.PskDir("alice")},username=alice",
            "--image-opts", "-c", "write -P 0x5c 0 64k", "-c", "read -P 0x5c 0 64k",
            $"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={silo.NbdPort},export=private,tls-creds=tls0",
        ])).AssertSuccess("qemu-io as alice");

        var bob = (await Tools.RunAsync(nbdinfo, ["--json", Psk(silo, keys, "bob", "private")]))
            .AssertSuccess("nbdinfo as bob");
        using (var json = JsonDocument.Parse(bob.Output))
            Assert.True(json.RootElement.GetProperty("exports")[0].GetProperty("is_read_only").GetBoolean());
        var bobWrites = await Tools.RunAsync(qemuIo,
        [
            "--object", $"tls-creds-psk,id=tls0,endpoint=client,dir={keys.PskDir("bob")},username=bob",
            "--image-opts", "-c", "write -P 0x11 0 4k",
            $"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={silo.NbdPort},export=private,tls-creds=tls0",
        ]);
        Assert.True(bobWrites.ExitCode != 0, $"bob wrote through a read-only grant:\n{bobWrites.Output}");
        Assert.Contains("Permission denied", bobWrites.Output, StringComparison.Ordinal);

        var plain = await Tools.RunAsync(nbdinfo, [silo.NbdUri("shared")]);
        Assert.True(plain.ExitCode != 0, $"a plain-text client was served by a TLS-only endpoint:\n{plain.Output}");
        Assert.Contains("TLS", plain.Output, StringComparison.Ordinal);

        // A revoke applies to the next connection.
        await Cloudctl.JsonAsync(silo, "--json", "access", "revoke", "alice", "private");
        var revoked = (await Tools.RunAsync(nbdinfo, ["--list", "--json", Psk(silo, keys, "alice", "")]))
            .AssertSuccess("nbdinfo --list as alice after the revoke");
        Assert.Equal(["shared"], ExportNames(revoked.Output));

        // cloudctl's refusals: a bad identity before any request (2), an unknown volume or grant by the service (1).
        Assert.Equal(2, (await Cloudctl.RunAsync(silo, "access", "grant", "a:b", "shared")).ExitCode);
        var unknown = await Cloudctl.RunAsync(silo, "access", "grant", "alice", "nosuch");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("volume 'nosuch' does not exist", unknown.Error, StringComparison.Ordinal);
        Assert.Equal(1, (await Cloudctl.RunAsync(silo, "access", "revoke", "alice", "private")).ExitCode);
    }

    [Fact]
    public async Task BadNbdTlsSettings_ExitTwo_WithOneLineNamingWhatIsWrong()
    {
        using var dir = new TempDirectory();
        var malformed = Path.Combine(dir.Path, "bad.psk");
        await File.WriteAllTextAsync(malformed, "alice 00112233\n");
        var missing = Path.Combine(dir.Path, "missing.psk");
        (string[] Args, string Says)[] cases =
        [
            (["--nbd-tls", "require"], "no keys are given"),
            (["--nbd-tls", "maybe"], "--nbd-tls allows off, on, require"),
            (["--nbd-tls", "require", "--nbd-tls-psk", missing], $"TlsPskPath '{missing}' does not exist"),
            (["--nbd-tls", "require", "--nbd-tls-psk", malformed], $"PSK file '{malformed}' line 1 is not 'identity:hexkey'"),
            (["--nbd-tls", "on", "--nbd-tls-cert", malformed], "needs both TlsCertificatePath and TlsKeyPath"),
        ];
        var dll = Path.Combine(AppContext.BaseDirectory, "Cloud.Silo.dll");
        foreach (var (args, says) in cases)
        {
            var ports = FreePorts.Next(4);
            var r = await Tools.RunAsync("dotnet",
            [
                dll, "--data", Path.Combine(dir.Path, "data"), "--silo-port", Text(ports[0]), "--gateway-port",
                Text(ports[1]), "--nbd-port", Text(ports[2]), "--http-port", Text(ports[3]), .. args,
            ]);
            var what = $"cloud-silo {string.Join(' ', args)}";
            Assert.True(r.ExitCode == 2, $"{what} exited {r.ExitCode}:\n{r.Output}");
            Assert.Contains(says, r.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Output, StringComparison.Ordinal);
            Assert.Single(r.Output.Split('\n'), l => l.StartsWith("cloud-silo:", StringComparison.Ordinal));
        }
    }

    private static string Text(int port) => port.ToString(CultureInfo.InvariantCulture);
}
