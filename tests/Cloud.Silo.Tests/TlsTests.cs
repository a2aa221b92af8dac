using System.Net.Sockets;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>
/// One silo with mutual TLS on (issue 17, item 1), its cluster's authority and certificates, and a second authority
/// standing for another cluster, in a directory of their own.
/// </summary>
public sealed class TlsSilo : IAsyncLifetime
{
    private readonly TempDirectory _directory = new();
    private SiloProcess? _silo;

    /// <summary>The cluster's authority.</summary>
    public TestCertificates Authority { get; } = TestCertificates.CreateAuthority();

    /// <summary>Another cluster's authority.</summary>
    public TestCertificates Stranger { get; } = TestCertificates.CreateAuthority("Another cluster CA");

    /// <summary>The directory the PEM files are in.</summary>
    public string Directory => _directory.Path;

    /// <summary>The silo; valid once xunit initialized the fixture.</summary>
    internal SiloProcess Silo => _silo ?? throw new InvalidOperationException("the silo is not started");

    /// <summary>The cluster authority's file.</summary>
    public string AuthorityFile { get; private set; } = "";

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        AuthorityFile = Authority.WriteAuthority(Directory);
        var (certificate, key) = Authority.IssueSilo("s1").WriteTo(Directory, "silo");
        _silo = await SiloProcess.StartAsync(
            Path.Combine(Directory, "data"),
            environment: new Dictionary<string, string>
            {
                ["Silo__Tls__Mode"] = "on",
                ["Silo__Tls__CertificateFile"] = certificate,
                ["Silo__Tls__KeyFile"] = key,
                ["Silo__Tls__AuthorityFile"] = AuthorityFile,
            });
    }

    /// <summary>Writes a client certificate of <paramref name="issuer"/> and returns cloudctl's TLS switches for it.</summary>
    public string[] ClientSwitches(TestCertificates issuer, string name, string? authorityFile = null)
    {
        var (certificate, key) = issuer.IssueClient(name).WriteTo(Directory, name);
        return ["--tls-cert", certificate, "--tls-key", key, "--tls-ca", authorityFile ?? AuthorityFile];
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_silo is not null) await _silo.DisposeAsync();
        Authority.Dispose();
        Stranger.Dispose();
        _directory.Dispose();
    }
}

/// <summary>
/// Mutual TLS between clients and a gateway (issue 17, item 1): a client with a certificate of the cluster's authority
/// calls; one without a certificate, with another authority's, or that does not trust the gateway's, cannot; and a
/// plaintext connection to the silo or gateway port gets nothing back.
/// </summary>
public sealed class TlsTests(TlsSilo fixture) : IClassFixture<TlsSilo>
{
    [Fact]
    public async Task ClientWithTheClustersCertificate_Calls_ThroughTheSdkAndCloudctl()
    {
        var switches = fixture.ClientSwitches(fixture.Authority, "operator");
        using var tls = ClusterCertificates.FromPemFiles(switches[1], switches[3], switches[5]);
        await using (var client = await CloudClient.ConnectAsync(fixture.Silo.Gateway, "cloud", "cloud", tls))
        {
            await client.CreateVolumeAsync(new VolumeSpec(
                "tls", 1 << 20, VolumeLevel.Raid1, 2, VolumeSpec.DefaultChunkSizeBytes, false));
        }

        var listed = await Cloudctl.RunAsync(fixture.Silo, ["volume", "list", "--json", .. switches]);

        Assert.True(listed.ExitCode == 0, $"cloudctl exited {listed.ExitCode}: {listed.Error}");
        Assert.Contains("\"tls\"", listed.Output, StringComparison.Ordinal);
        Assert.Contains("mutual TLS", fixture.Silo.Process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientWithoutACertificate_CannotCall()
    {
        var plaintext = await Assert.ThrowsAsync<CloudRequestException>(
            () => CloudClient.ConnectAsync(fixture.Silo.Gateway, "cloud", "cloud"));
        Assert.StartsWith("cannot connect to a Cloud silo", plaintext.Message, StringComparison.Ordinal);

        var cloudctl = await Cloudctl.RunAsync(fixture.Silo, "volume", "list");
        Assert.Equal(1, cloudctl.ExitCode);
        Assert.Contains("cannot connect to a Cloud silo", cloudctl.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientWithAnotherAuthoritysCertificate_CannotCall()
    {
        // The client trusts both authorities (so the gateway's certificate passes its check, and its own loads), but
        // holds a certificate the cluster never issued: the gateway refuses it.
        var (certificate, key) = fixture.Stranger.IssueClient("intruder").WriteTo(fixture.Directory, "intruder");
        var both = Path.Combine(fixture.Directory, "both-ca.crt");
        await File.WriteAllTextAsync(both, fixture.Stranger.AuthorityPem + "\n" + fixture.Authority.AuthorityPem);
        using var tls = ClusterCertificates.FromPemFiles(certificate, key, both);

        var refused = await Assert.ThrowsAsync<CloudRequestException>(
            () => CloudClient.ConnectAsync(fixture.Silo.Gateway, "cloud", "cloud", tls));
        Assert.StartsWith("cannot connect to a Cloud silo", refused.Message, StringComparison.Ordinal);

        var cloudctl = await Cloudctl.RunAsync(
            fixture.Silo, "volume", "list", "--tls-cert", certificate, "--tls-key", key, "--tls-ca", both);
        Assert.Equal(1, cloudctl.ExitCode);
    }

    [Fact]
    public async Task ClientCertificateOfAnotherAuthority_IsRefusedAtLoad_InOneLineWithoutKeyMaterial()
    {
        var switches = fixture.ClientSwitches(fixture.Stranger, "misfiled");

        var cloudctl = await Cloudctl.RunAsync(fixture.Silo, ["volume", "list", .. switches]);

        Assert.Equal(2, cloudctl.ExitCode);
        Assert.Contains("does not chain to --tls-ca", cloudctl.Error, StringComparison.Ordinal);
        Assert.Single(cloudctl.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain("PRIVATE KEY", cloudctl.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("none", "--tls on and needs the silo's certificate: give --tls-cert FILE --tls-key FILE")]
    [InlineData("missing-key", "--tls-key /nonexistent/silo.key: no such file")]
    [InlineData("client-certificate", "is not a silo certificate: it must allow both server and client authentication")]
    [InlineData("other-authority", "does not chain to --tls-ca")]
    public async Task SiloWithTlsOnAndNoUsableCertificate_RefusesToStart_InOneLine(string given, string expected)
    {
        var (silo, key) = fixture.Authority.IssueSilo("s9").WriteTo(fixture.Directory, "s9");
        var (client, clientKey) = fixture.Authority.IssueClient("c9").WriteTo(fixture.Directory, "c9");
        var (stranger, strangerKey) = fixture.Stranger.IssueSilo("x9").WriteTo(fixture.Directory, "x9");
        string[] tls = given switch
        {
            "none" => [],
            "missing-key" => ["--tls-cert", silo, "--tls-key", "/nonexistent/silo.key"],
            "client-certificate" => ["--tls-cert", client, "--tls-key", clientKey],
            _ => ["--tls-cert", stranger, "--tls-key", strangerKey],
        };
        var ports = FreePorts.Next(2);
        await using var process = ChildProcess.StartDotnet(
            "silo without a certificate",
            Path.Combine(AppContext.BaseDirectory, "Cloud.Silo.dll"),
            ["--data", Path.Combine(fixture.Directory, "refused"), "--nbd-port", "0", "--silo-port", $"{ports[0]}",
                "--gateway-port", $"{ports[1]}", "--tls", "on", "--tls-ca", fixture.AuthorityFile, .. tls]);
        Assert.Equal(2, await process.ExitAsync(Eventually.Bound));
        var lines = process.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var error = Assert.Single(lines, l => l.StartsWith("cloud-silo: ", StringComparison.Ordinal));
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", process.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("PRIVATE KEY", process.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gateway")]
    [InlineData("silo")]
    public async Task PlaintextConnection_ToTheSiloAndGatewayPorts_GetsNothingBack(string port)
    {
        var number = port == "gateway"
            ? fixture.Silo.GatewayPort
            : int.Parse(
                fixture.Silo.Process.Output.Split("silo port ")[1].Split(',')[0],
                System.Globalization.CultureInfo.InvariantCulture);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", number);
        var stream = tcp.GetStream();
        // The start of an Orleans connection preamble in the clear: a length and a grain id's bytes. A TLS server
        // reads it as a malformed ClientHello and drops the connection without a byte of reply.
        await stream.WriteAsync(new byte[] { 0x00, 0x00, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 });
        var buffer = new byte[256];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        int read;
        try
        {
            read = await stream.ReadAsync(buffer, timeout.Token);
        }
        catch (IOException)
        {
            read = 0; // A reset is as good as a close: nothing came back.
        }
        Assert.Equal(0, read);
    }
}
