using System.Globalization;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// A bed of two hosts with mutual TLS on (issue 17, item 1), each host's certificate issued by the cluster's
/// authority, and a second authority standing for another cluster.
/// </summary>
public sealed class TwoTlsHosts : IAsyncLifetime
{
    private PostgresServer? _postgres;
    private Cloud.HostBed.HostBed? _bed;

    /// <summary>The cluster's authority.</summary>
    public TestCertificates Authority { get; } = TestCertificates.CreateAuthority();

    /// <summary>Another cluster's authority.</summary>
    public TestCertificates Stranger { get; } = TestCertificates.CreateAuthority("Another cluster CA");

    /// <summary>Where the test's own PEM files go.</summary>
    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("cloud-tls-bed-").FullName;

    /// <summary>The bed; valid once xunit initialized the fixture.</summary>
    public Cloud.HostBed.HostBed Bed => _bed ?? throw new InvalidOperationException("the bed is not started");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync();
        var client = Authority.IssueClient("bed-client").WriteTo(Directory, "client");
        var authorityFile = Authority.WriteAuthority(Directory);
        _bed = await Cloud.HostBed.HostBed.StartAsync(_postgres, new HostBedOptions
        {
            Hosts = 2,
            ClusterId = "tlsbed",
            DiskPools = true,
            Tls = new HostBedTls
            {
                AuthorityPem = Authority.AuthorityPem,
                HostCertificate = host => Authority.IssueSilo(host.Name) is var pair
                    ? (pair.CertificatePem, pair.KeyPem)
                    : default,
                Client = ClusterCertificates.FromPemFiles(client.CertificateFile, client.KeyFile, authorityFile),
            },
        });
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_bed is not null) await _bed.DisposeAsync();
        if (_postgres is not null) await _postgres.DisposeAsync();
        Authority.Dispose();
        Stranger.Dispose();
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (IOException) { /* best effort: a temporary directory */ }
    }
}

/// <summary>
/// Silo-to-silo TLS across hosts (issue 17, item 1): silos with the cluster's certificates form one cluster and serve
/// a client that has one; a silo with another authority's certificate, or none, never becomes a member.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class TlsClusterTests(TwoTlsHosts fixture) : IClassFixture<TwoTlsHosts>
{
    /// <summary>How long a silo that cannot reach its peers is watched before the test calls it kept out.</summary>
    private static readonly TimeSpan JoinWatch = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SilosWithTheClustersCertificates_FormOneCluster_AndServeAClientWithOne()
    {
        var bed = fixture.Bed;

        await using var client = await bed.ConnectToAsync(1);
        await client.CreateVolumeAsync(
            new VolumeSpec("across", 1 << 20, VolumeLevel.Raid1, 2, VolumeSpec.DefaultChunkSizeBytes, true));
        var volume = await client.OpenVolumeAsync("across");
        var written = Enumerable.Range(0, 8192).Select(i => (byte)(i * 13)).ToArray();
        await volume.WriteAsync(0, written);
        var read = new byte[written.Length];
        await (await client.OpenVolumeAsync("across")).ReadAsync(0, read);

        // Both active means each probed the other over TLS (Orleans' membership pings run on the silo port).
        Assert.Equal(2, (await bed.MembershipAsync()).Count(m => m.Status == Cloud.HostBed.HostBed.ActiveStatus));
        Assert.Equal(written, read);
        Assert.Contains("mutual TLS", bed.OutputOf(0), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AVolumeAcrossTheHostsPools_GoesOverTheDiskStreamWithMutualTls_WhichRefusesPlaintext()
    {
        var bed = fixture.Bed;
        await using var client = await bed.ConnectToAsync(0);
        // RAID-1 of two members on two hosts' pools: each silo reaches the other host's member through its disk stream.
        await client.CreateVolumeAsync(
            new VolumeSpec("pooled", 1 << 20, VolumeLevel.Raid1, 2, VolumeSpec.DefaultChunkSizeBytes, true));
        var written = Enumerable.Range(0, 65536).Select(i => (byte)(i * 7)).ToArray();
        await (await client.OpenVolumeAsync("pooled")).WriteAsync(0, written);
        var read = new byte[written.Length];
        await (await client.OpenVolumeAsync("pooled")).ReadAsync(0, read);
        Assert.Equal(written, read);

        var listening = System.Text.RegularExpressions.Regex.Match(
            bed.OutputOf(1), @"Disk stream listening on (\S+) \(mutual TLS\)");
        Assert.True(listening.Success, "h2's disk stream does not listen with mutual TLS:\n" + bed.OutputOf(1));
        for (var i = 0; i < 2; i++)
            Assert.DoesNotContain("cannot be used", bed.OutputOf(i), StringComparison.Ordinal);

        // A caller without TLS gets nothing: the server ends the connection at its first bytes. (A plaintext server
        // would answer this whole hello, with its key wrong, by a refusal.)
        using var plain = new System.Net.Sockets.Socket(
            System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await plain.ConnectAsync(System.Net.IPEndPoint.Parse(listening.Groups[1].Value));
        byte[] hello = [.. "CLDS"u8, 1, 0, 32, 0, .. new byte[32], 1, 0, (byte)'x'];
        await plain.SendAsync(hello);
        var answer = new byte[16];
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        int got;
        try
        {
            got = await plain.ReceiveAsync(answer, System.Net.Sockets.SocketFlags.None, wait.Token);
        }
        catch (System.Net.Sockets.SocketException)
        {
            got = 0;
        }
        Assert.Equal(0, got);
    }

    [Fact]
    public void EachHostsKey_IsReadableByThatHostsUserOnly()
    {
        foreach (var host in fixture.Bed.Hosts)
        {
            var key = Path.Combine(host.Directory, "tls", "silo.key");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
            Assert.Equal(
                UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute,
                File.GetUnixFileMode(host.Directory));
            if (fixture.Bed.SeparateUsers) Assert.Equal(host.Uid, Owner(key));
        }
    }

    [Theory]
    [InlineData("another authority")]
    [InlineData("plaintext")]
    public async Task SiloWithoutTheClustersCertificate_CannotJoin(string kind)
    {
        var bed = fixture.Bed;
        var name = kind == "plaintext" ? "plain" : "stranger";
        var data = Path.Combine(fixture.Directory, name);
        List<string> args =
        [
            "--clustering", "postgres", "--connection", bed.ConnectionString, "--cluster-id", bed.ClusterId,
            "--name", name, "--address", $"127.0.0.{Cloud.HostBed.HostBed.AddressBase + 9}", "--data", data,
            "--silo-port", bed.SiloPort.ToString(CultureInfo.InvariantCulture),
            "--gateway-port", bed.GatewayPort.ToString(CultureInfo.InvariantCulture), "--nbd-port", "0",
        ];
        if (kind == "plaintext")
        {
            args.AddRange(["--tls", "off"]);
        }
        else
        {
            // A complete, valid TLS identity, of another cluster: its certificate does not chain to this one's.
            var (certificate, key) = fixture.Stranger.IssueSilo(name).WriteTo(fixture.Directory, name);
            args.AddRange(["--tls", "on", "--tls-cert", certificate, "--tls-key", key,
                "--tls-ca", fixture.Stranger.WriteAuthority(fixture.Directory, "stranger-ca")]);
        }

        await using var outsider = ChildProcess.StartDotnet(
            name, Repository.BuiltAssembly("silo", "Cloud.Silo.dll"), args);
        var joined = await Eventually.WithinAsync(
            async () => (await bed.MembershipAsync()).Any(
                m => m.SiloName == name && m.Status == Cloud.HostBed.HostBed.ActiveStatus),
            JoinWatch,
            TimeSpan.FromMilliseconds(500));

        Assert.False(joined, $"the {kind} silo joined the TLS cluster:\n{outsider.Output}");
        // It got as far as the membership table (so it was kept out by the handshake, not by a bad start).
        Assert.Contains(await bed.MembershipAsync(), m => m.SiloName == name);
        Assert.DoesNotContain($"Cloud silo '{name}' up", outsider.Output, StringComparison.Ordinal);
        Assert.Equal(2, (await bed.MembershipAsync()).Count(m => m.Status == Cloud.HostBed.HostBed.ActiveStatus));
        await outsider.KillAsync();
        // The cluster goes on serving its own clients.
        await using var client = await bed.ConnectAsync();
        await client.ListVolumesAsync();
    }

    private static int Owner(string path)
    {
        using var stat = System.Diagnostics.Process.Start(
            new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%u", path]) { RedirectStandardOutput = true })!;
        var text = stat.StandardOutput.ReadToEnd().Trim();
        stat.WaitForExit();
        return int.Parse(text, CultureInfo.InvariantCulture);
    }
}
