using System.Globalization;
using System.Net;
using System.Text;
using Cloud.Testing;
using Npgsql;

namespace Cloud.Silo.Tests;

/// <summary>
/// No secret leaks (issue 17, item 5): a full run of a silo on PostgreSQL with a password, a page-blob account key and
/// a TLS key file whose contents are known, cloudctl against it, both programs' <c>--help</c>, the silo's
/// <c>--print-settings</c>, the errors of a database out of reach and of an unusable key, and the silo's OTLP telemetry
/// are searched for every one of those secrets.
/// </summary>
public sealed class SecretLeakTests
{
    private const string PostgresPassword = "pg-Secret-7f3a9c11";

    /// <summary>A page-blob account key (base64, as Azure's are); the silo only connects when a volume uses it.</summary>
    private static readonly string StorageKey =
        Convert.ToBase64String(Encoding.ASCII.GetBytes("storage-key-secret-9d2b44e1-0000000000"));

    [Fact]
    public async Task Secrets_AppearInNoLogHelpSettingsListingErrorOrTelemetry()
    {
        using var dir = new TempDirectory();
        await using var postgres = await PostgresServer.StartAsync();
        await using var otlp = OtlpSink.Start();
        var connection = new NpgsqlConnectionStringBuilder(await postgres.CreateDatabaseAsync("leak"))
        {
            Password = PostgresPassword,
        }.ConnectionString;
        using var authority = TestCertificates.CreateAuthority();
        var silo = authority.IssueSilo("leaky");
        var (certificate, key) = silo.WriteTo(dir.Path, "silo");
        var client = authority.IssueClient("operator").WriteTo(dir.Path, "operator");
        var ca = authority.WriteAuthority(dir.Path);
        // The key's base64 body lines (the PEM armour is no secret).
        string[] keyLines = [.. silo.KeyPem.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("-----", StringComparison.Ordinal))];
        string[] secrets = [PostgresPassword, StorageKey, .. keyLines];

        var environment = new Dictionary<string, string>
        {
            ["Silo__Clustering"] = "postgres",
            ["Silo__Connection"] = connection,
            ["Silo__ApplySchema"] = "true",
            ["Silo__Tls__Mode"] = "on",
            ["Silo__Tls__CertificateFile"] = certificate,
            ["Silo__Tls__KeyFile"] = key,
            ["Silo__Tls__AuthorityFile"] = ca,
            ["PageBlobs__ConnectionString"] =
                $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={StorageKey};BlobEndpoint=http://127.0.0.1:{FreePorts.Next()}/devstoreaccount1",
            ["Logging__LogLevel__Default"] = "Information",
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "500",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["OTEL_BLRP_SCHEDULE_DELAY"] = "200",
        };
        var seen = new List<(string What, string Text)>();
        string[] tls = ["--tls-cert", client.CertificateFile, "--tls-key", client.KeyFile, "--tls-ca", ca];

        await using (var running = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"), "leaky", environment))
        {
            var created = await Cloudctl.RunAsync(
                running,
                ["volume", "create", "leak", "--size", "1MiB", "--level", "raid1", "--disks", "2",
                    "--clustering", "postgres", "--connection", connection, .. tls]);
            Assert.True(created.ExitCode == 0, $"cloudctl exited {created.ExitCode}: {created.Error}");
            var listed = await Cloudctl.RunAsync(
                running, ["volume", "list", "--json", "--clustering", "postgres", "--connection", connection, .. tls]);
            Assert.True(listed.ExitCode == 0, $"cloudctl exited {listed.ExitCode}: {listed.Error}");
            seen.Add(("cloudctl volume create", created.Output + created.Error));
            seen.Add(("cloudctl volume list", listed.Output + listed.Error));
            await Eventually.TrueAsync(() => otlp.Received.Count > 0, "the silo to export telemetry");
            seen.Add(("silo log", running.Process.Output));
        }

        // The errors: a database out of reach (from the silo and from cloudctl) and a key file that is not a key.
        var unreachable = new NpgsqlConnectionStringBuilder(connection) { Port = FreePorts.Next() }.ConnectionString;
        seen.Add(("silo, database out of reach", await RunSiloToExitAsync(
            new Dictionary<string, string>(environment) { ["Silo__Connection"] = unreachable }, [])));
        seen.Add(("cloudctl, database out of reach", await RunCloudctlAsync(
            ["volume", "list", "--clustering", "postgres", "--connection", unreachable, .. tls], [])));
        var notAKey = Path.Combine(dir.Path, "not-a-key.key");
        await File.WriteAllTextAsync(notAKey, string.Join('\n', keyLines.Reverse()));
        seen.Add(("silo, unusable key", await RunSiloToExitAsync(
            new Dictionary<string, string>(environment) { ["Silo__Tls__KeyFile"] = notAKey }, [])));
        seen.Add(("cloudctl, unusable key", await RunCloudctlAsync(
            ["volume", "list", "--tls-cert", client.CertificateFile, "--tls-key", notAKey, "--tls-ca", ca], [])));

        // Help and the settings listing, with every secret in the environment they might echo.
        var clientEnvironment = new Dictionary<string, string>
        {
            ["CLOUD_CONNECTION"] = connection,
            ["CLOUD_TLS_CERT"] = client.CertificateFile,
            ["CLOUD_TLS_KEY"] = client.KeyFile,
            ["CLOUD_TLS_CA"] = ca,
        };
        seen.Add(("silo --help", await RunSiloToExitAsync(environment, ["--help"])));
        seen.Add(("silo --print-settings", await RunSiloToExitAsync(environment, ["--print-settings"])));
        seen.Add(("cloudctl --help", await RunCloudctlAsync(["--help"], clientEnvironment)));
        seen.Add(("cloudctl volume create --help", await RunCloudctlAsync(["volume", "create", "--help"], clientEnvironment)));
        seen.Add(("telemetry (OTLP request bodies)", otlp.Text()));

        Assert.All(seen, s => Assert.False(string.IsNullOrWhiteSpace(s.Text), $"{s.What} printed nothing"));
        // The error runs reached their errors (so their messages are what was searched).
        Assert.Contains("cloud-silo: applying the schema failed", seen[3].Text, StringComparison.Ordinal);
        Assert.Contains("cloudctl: cannot connect", seen[4].Text, StringComparison.Ordinal);
        Assert.Contains("cloud-silo: --tls on: --tls-cert", seen[5].Text, StringComparison.Ordinal);
        Assert.Contains("cloudctl: --tls-cert", seen[6].Text, StringComparison.Ordinal);
        foreach (var (what, text) in seen)
        {
            foreach (var secret in secrets)
                Assert.False(
                    text.Contains(secret, StringComparison.Ordinal),
                    $"{what} holds the secret '{secret[..6]}...':\n{text}");
        }
    }

    private static async Task<string> RunSiloToExitAsync(Dictionary<string, string> environment, string[] args)
    {
        var ports = FreePorts.Next(2);
        await using var silo = ChildProcess.StartDotnet(
            "silo", Path.Combine(AppContext.BaseDirectory, "Cloud.Silo.dll"),
            ["--nbd-port", "0", "--silo-port", ports[0].ToString(CultureInfo.InvariantCulture),
                "--gateway-port", ports[1].ToString(CultureInfo.InvariantCulture), .. args],
            environment);
        await silo.ExitAsync(TimeSpan.FromMinutes(2));
        return silo.Output;
    }

    private static async Task<string> RunCloudctlAsync(string[] args, Dictionary<string, string> environment)
    {
        await using var cloudctl = ChildProcess.StartDotnet(
            "cloudctl", Repository.BuiltAssembly("client/cloudctl", "cloudctl.dll"), args, environment);
        await cloudctl.ExitAsync(TimeSpan.FromMinutes(2));
        return cloudctl.Output;
    }

    /// <summary>An OTLP/HTTP collector that keeps every request body (protobuf carries strings as UTF-8 bytes).</summary>
    private sealed class OtlpSink : IAsyncDisposable
    {
        private readonly HttpListener _listener;
        private readonly Task _serving;

        private OtlpSink(HttpListener listener, string endpoint)
        {
            _listener = listener;
            Endpoint = endpoint;
            _serving = ServeAsync();
        }

        public string Endpoint { get; }

        public System.Collections.Concurrent.ConcurrentQueue<byte[]> Received { get; } = new();

        public static OtlpSink Start()
        {
            var listener = new HttpListener();
            var endpoint = $"http://127.0.0.1:{FreePorts.Next()}/";
            listener.Prefixes.Add(endpoint);
            listener.Start();
            return new OtlpSink(listener, endpoint.TrimEnd('/'));
        }

        public string Text() => string.Join('\n', Received.Select(b => Encoding.UTF8.GetString(b)));

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try { context = await _listener.GetContextAsync(); }
                catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException) { return; }
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                Received.Enqueue(body.ToArray());
                context.Response.StatusCode = 200;
                context.Response.Close();
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            _listener.Close();
            await _serving;
        }
    }
}
