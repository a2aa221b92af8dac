using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Options;
using static Cloud.Nbd.NbdProtocol;

namespace Cloud.Nbd.Tests;

/// <summary>
/// The protocol's TLS rules (doc/proto.md, "TLS support") and per-volume access, byte by byte with the raw client.
/// The TLS numbers are the protocol document's, written out here rather than taken from the server.
/// </summary>
public sealed class TlsHandshakeTests : IAsyncLifetime
{
    /// <summary>NBD_REP_ERR_TLS_REQD: 2^31 + 5.</summary>
    private const uint TlsRequired = 0x80000005;

    /// <summary>NBD_OPT_STARTTLS.</summary>
    private const uint StartTls = 5;

    private const long SizeBytes = 8L << 20;

    private readonly string _dir = Directory.CreateTempSubdirectory("nbd-tls-rules-").FullName;
    private TlsTestKeys _keys = null!;

    public async Task InitializeAsync() => _keys = await TlsTestKeys.CreateAsync(_dir);

    public Task DisposeAsync()
    {
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    private Task<TestServer> StartX509Async(NbdTlsMode mode, params MemoryVolume[] volumes) =>
        TestServer.StartAsync(
            o =>
            {
                o.Tls = mode;
                o.TlsCertificatePath = _keys.ServerCertificatePath;
                o.TlsKeyPath = _keys.ServerKeyPath;
                o.TlsCaPath = _keys.CaPath;
            },
            volumes);

    private static async Task<List<string>> ListAsync(RawNbdClient client)
    {
        await client.SendOptionAsync(OptList, []);
        var names = new List<string>();
        while (true)
        {
            var r = await client.ReadOptionReplyAsync();
            if (r.Type == RepAck)
            {
                return names;
            }
            Assert.Equal(RepServer, r.Type);
            names.Add(Encoding.UTF8.GetString(r.Data, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(r.Data)));
        }
    }

    [Fact]
    public async Task Require_RefusesListAndGoBeforeStartTls_WithTlsRequired_ThenServesInsideTls()
    {
        await using var server = await StartX509Async(NbdTlsMode.Require, new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
        await client.SendOptionAsync(OptList, []);
        Assert.Equal(TlsRequired, (await client.ReadOptionReplyAsync()).Type);
        var (refused, _) = await client.InfoOrGoAsync(OptGo, "v1");
        Assert.Equal(TlsRequired, refused.Type);

        Assert.Equal(RepAck, (await client.StartTlsAsync(_keys.Ca, _keys.ClientCertificate("alice"))).Type);
        Assert.Equal(["v1"], await ListAsync(client));
        var (final, _) = await client.InfoOrGoAsync(OptGo, "v1");
        Assert.Equal(RepAck, final.Type);
        var reply = await client.ReadBlockAsync(1, 0, 4096);
        Assert.Equal(0u, reply.Error);
        await client.DisconnectAsync();
    }

    [Fact]
    public async Task Require_ExportNameBeforeStartTls_ClosesTheConnection()
    {
        await using var server = await StartX509Async(NbdTlsMode.Require, new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(OptExportName, Encoding.UTF8.GetBytes("v1"));
        Assert.True(await client.IsClosedByServerAsync(), "EXPORT_NAME before STARTTLS must end the session");
    }

    [Fact]
    public async Task On_ServesPlainTextClients_AndStartTlsTwiceIsInvalid()
    {
        await using var server = await StartX509Async(NbdTlsMode.On, new MemoryVolume("v1", SizeBytes));
        await using (var plain = await RawNbdClient.OpenAsync(server.EndPoint, "v1"))
        {
            Assert.Equal(0u, (await plain.ReadBlockAsync(1, 0, 4096)).Error);
        }
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        Assert.Equal(RepAck, (await client.StartTlsAsync(_keys.Ca, _keys.ClientCertificate("alice"))).Type);
        await client.SendOptionAsync(StartTls, []);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        Assert.Equal(["v1"], await ListAsync(client));
    }

    [Fact]
    public async Task Off_StartTls_IsUnsupported()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(StartTls, []);
        Assert.Equal(RepErrUnsup, (await client.ReadOptionReplyAsync()).Type);
        Assert.Equal(["v1"], await ListAsync(client));
    }

    [Fact]
    public async Task ReadOnlyGrant_AdvertisesReadOnly_AndWritesTrimsAndZeroesFailWithEperm_ReadsWork()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await volume.WriteAsync(0, Enumerable.Repeat((byte)0x5a, 4096).ToArray());
        await using var server = await StartX509Async(NbdTlsMode.Require, volume);
        server.Resolver.Access = new NbdAccessList([new NbdGrantEntry("bob", "v1", ReadOnly: true)]);
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
        Assert.Equal(RepAck, (await client.StartTlsAsync(_keys.Ca, _keys.ClientCertificate("bob"))).Type);
        var (final, _) = await client.InfoOrGoAsync(OptGo, "v1");
        Assert.Equal(RepAck, final.Type);
        Assert.NotEqual(0, client.TransmissionFlags & TxReadOnly);

        const uint eperm = 1;
        Assert.Equal(eperm, (await client.CommandAsync(CmdWrite, 1, 0, 4096, payload: new byte[4096])).Error);
        Assert.Equal(eperm, (await client.CommandAsync(CmdTrim, 2, 0, 4096)).Error);
        Assert.Equal(eperm, (await client.CommandAsync(CmdWriteZeroes, 3, 0, 4096)).Error);
        var read = await client.ReadBlockAsync(4, 0, 4096);
        Assert.Equal(0u, read.Error);
        Assert.All(read.Data!, b => Assert.Equal(0x5a, b));
        Assert.Equal(0u, (await client.CommandAsync(CmdFlush, 5, 0, 0)).Error);
        var stored = new byte[4096];
        await volume.ReadAsync(0, stored);
        Assert.All(stored, b => Assert.Equal(0x5a, b));
    }

    [Fact]
    public async Task Access_VolumeWithoutGrantsIsOpenToAll_GrantedVolumeOnlyToItsIdentities()
    {
        await using var server = await StartX509Async(
            NbdTlsMode.On, new MemoryVolume("open", SizeBytes), new MemoryVolume("alices", SizeBytes));
        server.Resolver.Access = new NbdAccessList([new NbdGrantEntry("alice", "alices", ReadOnly: false)]);

        // A plain-text client has no identity: it sees and opens only the volume nobody was granted.
        await using (var anonymous = await RawNbdClient.ConnectAsync(server.EndPoint))
        {
            await anonymous.SendClientFlagsAsync(ClientFlagFixedNewstyle);
            Assert.Equal(["open"], await ListAsync(anonymous));
            var (refused, _) = await anonymous.InfoOrGoAsync(OptInfo, "alices");
            Assert.Equal(RepErrUnknown, refused.Type);
            Assert.Contains("no volume named 'alices'", refused.Text);
        }
        foreach (var (identity, expected) in new[] { ("alice", new[] { "alices", "open" }), ("bob", ["open"]) })
        {
            await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
            await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
            await client.StartTlsAsync(_keys.Ca, _keys.ClientCertificate(identity));
            Assert.Equal(expected, await ListAsync(client));
            var (final, _) = await client.InfoOrGoAsync(OptInfo, "alices");
            Assert.Equal(identity == "alice" ? RepAck : RepErrUnknown, final.Type);
        }
    }

    [Fact]
    public void AccessList_ReadWriteWinsOverReadOnly_AndNoIdentityGetsNothingOnAGrantedVolume()
    {
        var list = new NbdAccessList(
        [
            new NbdGrantEntry("alice", "v", ReadOnly: true),
            new NbdGrantEntry("alice", "v", ReadOnly: false),
            new NbdGrantEntry("bob", "v", ReadOnly: true),
        ]);
        Assert.Equal(NbdAccess.ReadWrite, list.AccessOf("v", "alice"));
        Assert.Equal(NbdAccess.ReadOnly, list.AccessOf("v", "bob"));
        Assert.Equal(NbdAccess.None, list.AccessOf("v", "carol"));
        Assert.Equal(NbdAccess.None, list.AccessOf("v", null));
        Assert.Equal(NbdAccess.ReadWrite, list.AccessOf("w", null));
        Assert.Equal(["w"], list.Visible(["v", "w"], null));
    }

    [Fact]
    public void PskFile_FromPsktool_Parses_AndMalformedLinesAreNamed()
    {
        var keys = PskKeyFile.TryLoad(_keys.ServerPskPath, out var error);
        Assert.Null(error);
        Assert.Equal(["alice", "bob"], keys!.Identities.Order(StringComparer.Ordinal));
        Assert.Equal(32, keys.KeyOf("alice")!.Length);

        (string[] Lines, string Says)[] bad =
        [
            (["alice"], "line 1 is not 'identity:hexkey'"),
            (["# comment", "alice:zz00"], "line 2: the key is not hex digits"),
            (["alice:00"], "the key is 1 bytes; allowed: 16-64"),
            (["a:b:00112233445566778899aabbccddeeff"], "line 1 is not 'identity:hexkey'"),
            ([$"alice:{new string('a', 32)}", $"alice:{new string('b', 32)}"], "identity 'alice' is given twice"),
            ([""], "names no identity"),
        ];
        foreach (var (lines, says) in bad)
        {
            Assert.Null(PskKeyFile.TryParse("keys.psk", lines, out error));
            Assert.Contains(says, error);
        }
    }

    [Fact]
    public async Task Options_TlsWithoutKeys_BothKinds_MissingFiles_AndAMalformedPskFile_AreRefusedAtStart()
    {
        (Action<NbdServerOptions> Configure, string Says)[] cases =
        [
            (o => o.Tls = NbdTlsMode.Require, "no keys are given"),
            (o =>
            {
                o.Tls = NbdTlsMode.On;
                o.TlsPskPath = _keys.ServerPskPath;
                o.TlsCertificatePath = _keys.ServerCertificatePath;
                o.TlsKeyPath = _keys.ServerKeyPath;
            }, "choose one"),
            (o =>
            {
                o.Tls = NbdTlsMode.Require;
                o.TlsPskPath = Path.Combine(_dir, "missing.psk");
            }, "TlsPskPath '" + Path.Combine(_dir, "missing.psk") + "' does not exist"),
            (o => o.TlsPskPath = _keys.ServerPskPath, "Tls is off but TLS keys are given"),
            (o =>
            {
                o.Tls = NbdTlsMode.Require;
                o.TlsCertificatePath = _keys.ServerCertificatePath;
            }, "needs both TlsCertificatePath and TlsKeyPath"),
        ];
        foreach (var (configure, says) in cases)
        {
            var options = new NbdServerOptions { Port = NbdServerOptions.AnyFreePort };
            configure(options);
            var e = Assert.Throws<OptionsValidationException>(() => NbdServerOptionsValidator.ThrowIfInvalid(options));
            Assert.Contains(says, e.Message);
        }

        var malformed = Path.Combine(_dir, "bad.psk");
        await File.WriteAllTextAsync(malformed, "alice 0011\n");
        var server = new NbdServer(
            new MapResolver(),
            Options.Create(new NbdServerOptions
            {
                Port = NbdServerOptions.AnyFreePort,
                Tls = NbdTlsMode.Require,
                TlsPskPath = malformed,
            }));
        var start = await Assert.ThrowsAsync<OptionsValidationException>(() => server.StartAsync());
        Assert.Contains($"PSK file '{malformed}' line 1 is not 'identity:hexkey'", start.Message);
    }
}
