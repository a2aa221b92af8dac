using System.Collections.Immutable;
using System.Net;
using System.Text;
using System.Text.Json;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Bed = Cloud.HostBed.HostBed;
using Cloud.HostBed;
using Cloud.Hosting.Postgres;
using Cloud.Silo;
using Cloud.Storage.Azure;
using Cloud.Testing;
using Npgsql;

namespace Cloud.Infra.Tests;

/// <summary>
/// The deployment contract run (issue 16 item 4): three silos at once, each started with exactly the silo container's
/// environment from the compiled <c>main.bicep</c>, with the PostgreSQL and Azurite endpoints swapped for local ones
/// and the managed identity's token endpoint for a local one (the same variables Container Apps gives a container),
/// and nothing else changed. The platform's part is played here too: each silo's own address (<c>CLOUD_HOST_ADDRESS</c>, as a
/// replica's IP), its hostname (<c>Silo__Name</c>, which defaults to the machine name, one for all processes here) and
/// a writable data directory (the image's <c>Cloud__DataDirectory</c>). The silos run on the multi-host bed's hosts
/// (<see cref="Bed.CreateHosts"/>): each as its host's Unix user (when root, as in CI) with its data directory and
/// keys in that host's 0700 directory, on a loopback address of its own.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")] // the bed's hosts: Unix users, setpriv
public sealed class DeployedSiloTests
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(2);

    /// <summary>NBD's write command and its FUA flag (the NBD protocol's numbers).</summary>
    private const ushort NbdCmdWrite = 1;
    private const ushort NbdFlagFua = 1;

    [Fact]
    public async Task SilosWithTheTemplatesEnvironment_AnswerProbes_PutDefaultVolumesOnPageBlobs_AndSurviveKill9()
    {
        await using var postgres = await PostgresServer.StartAsync();
        await using var azurite = await AzuriteInstance.StartAsync();
        var (connectionString, token) = await TokenRoleAsync(postgres);
        await using var identity = FakeManagedIdentity.Start(token);
        var spec = await SiloContainerSpec.CompileAsync(DeploymentContractTests.AzureParameters);
        Assert.Empty(DeploymentContractTests.UnreadKeys(spec.Environment.Select(e => e.Name)));
        using var root = new TemporaryDirectory();
        using var authority = TestCertificates.CreateAuthority();
        var clientFiles = authority.IssueClient("operator").WriteTo(root.Path, "operator");
        using var clientTls = ClusterCertificates.FromPemFiles(
            clientFiles.CertificateFile, clientFiles.KeyFile, authority.WriteAuthority(root.Path));
        var clusterId = spec["Silo__ClusterId"];
        var container = spec["PageBlobs__DefaultContainer"];
        var gatewayPort = int.Parse(spec["Silo__GatewayPort"], System.Globalization.CultureInfo.InvariantCulture);
        var nbdPort = int.Parse(spec["Nbd__Port"], System.Globalization.CultureInfo.InvariantCulture);

        // The hosts of the multi-host bed: a Unix user and a 0700 directory each (when root, as in CI), no shared
        // directory; the replicas' addresses are the platform's, given below as CLOUD_HOST_ADDRESS.
        await using var bed = Bed.CreateHosts(new HostBedOptions { Hosts = 3, ClusterId = spec["Silo__ClusterId"] });

        Dictionary<string, string> Environment(int index, IPAddress host)
        {
            var env = spec.Environment.ToDictionary(e => e.Name, e => e.Value, StringComparer.Ordinal);
            // The swaps: local PostgreSQL (no TLS here), Azurite for the storage account, the local token endpoint.
            env["Silo__Connection"] = connectionString;
            Assert.True(env.Remove("PageBlobs__ServiceUri"));
            env["PageBlobs__ConnectionString"] = azurite.ConnectionString();
            env[FakeManagedIdentity.EndpointVariable] = identity.Endpoint;
            env[FakeManagedIdentity.HeaderVariable] = identity.Header;
            // The platform: the replica's address and hostname, and the image's writable data directory.
            env["CLOUD_HOST_ADDRESS"] = host.ToString();
            env["Silo__Name"] = $"replica-{host.GetAddressBytes()[3]}";
            env["Cloud__DataDirectory"] = bed.Hosts[index].DataDirectory;
            SwapCertificateFiles(env, authority, Path.Combine(bed.Hosts[index].Directory, "tls"));
            bed.HandOver(index);
            return env;
        }

        var pattern = new byte[256 << 10];
        new Random(1616).NextBytes(pattern);
        IPAddress[] hosts = [NewHostAddress(), NewHostAddress(), NewHostAddress()];
        await Task.WhenAll(hosts.Select((h, i) => bed.StartHostFromEnvironmentAsync(i, Environment(i, h), "up: gateway")));
        AssertEachReplicaRunsAsItsHostsUser(bed);
        foreach (var host in hosts) await AssertProbesAnswerAsync(spec, host);
        var creator = hosts[0];
        await using (var client = await CloudClient.ConnectAsync($"{creator}:{gatewayPort}", clusterId, clusterId, clientTls))
        {
            var info = await client.CreateVolumeAsync(
                new VolumeSpec("deployed", 4 << 20, VolumeLevel.Raid1, 2, VolumeSpec.DefaultChunkSizeBytes, true));

            // No --disk: page blobs in the template's container, named after the volume and the member.
            var tag = info.VolumeId.ToString("N")[..8];
            Assert.Equal(
                [.. Enumerable.Range(0, 2).Select(i => $"pageblob:{container}/deployed-{tag}/disk{i}")],
                info.DiskPaths.ToArray());
            var blobs = PageBlobConnection.FromConnectionString(azurite.ConnectionString());
            foreach (var location in info.DiskPaths)
            {
                var disk = (PageBlobDisk)DiskDescriptor.Parse(location);
                Assert.True(
                    (await blobs.GetPageBlobClient(disk.Container, disk.Blob).ExistsAsync()).Value, location);
            }

            // NBD on the ingress port writes; the SDK on the gateway port reads it back.
            await NbdWriteAsync(new IPEndPoint(creator, nbdPort), "deployed", 1 << 20, pattern);
            Assert.Equal(pattern, await SdkReadAsync(client, "deployed", 1 << 20, pattern.Length));
        }

        // The replica that created the volume dies without a goodbye; the other two serve it.
        await bed.KillAsync(0);
        await using (var client = await CloudClient.ConnectAsync($"{hosts[1]}:{gatewayPort}", clusterId, clusterId, clientTls))
        {
            Assert.Equal(pattern, await SdkReadAsync(client, "deployed", 1 << 20, pattern.Length));
            Assert.Equal(
                pattern,
                await NbdReadAsync(new IPEndPoint(hosts[2], nbdPort), "deployed", 1 << 20, pattern.Length));

            // The catalog made these blobs, so deleting the volume deletes them.
            var members = (await client.ShowVolumeAsync("deployed")).Disks.Select(d => d.Path).ToList();
            await client.DeleteVolumeAsync("deployed");
            var blobs = PageBlobConnection.FromConnectionString(azurite.ConnectionString());
            foreach (var disk in members.Select(m => (PageBlobDisk)DiskDescriptor.Parse(m)))
                Assert.False((await blobs.GetPageBlobClient(disk.Container, disk.Blob).ExistsAsync()).Value);
        }
        Assert.True(identity.TokensServed > 0, "the silos never asked the managed identity endpoint for a token");
    }

    [Fact]
    public async Task Silo_WhoseManagedIdentityGivesNoToken_StopsWithOneLineNamingTheIdentityAndTheScope()
    {
        await using var postgres = await PostgresServer.StartAsync();
        var (connectionString, _) = await TokenRoleAsync(postgres);
        var spec = await SiloContainerSpec.CompileAsync(DeploymentContractTests.AzureParameters);
        using var root = new TemporaryDirectory();
        var env = spec.Environment.ToDictionary(e => e.Name, e => e.Value, StringComparer.Ordinal);
        env["Silo__Connection"] = connectionString;
        // A token endpoint where nothing listens: the identity is not assigned to this host.
        env[FakeManagedIdentity.EndpointVariable] = $"http://127.0.0.1:{FreePorts.Next()}/msi/token/";
        env[FakeManagedIdentity.HeaderVariable] = "no-identity-here";
        env["CLOUD_HOST_ADDRESS"] = NewHostAddress().ToString();
        env["Cloud__DataDirectory"] = root.Path;
        using var authority = TestCertificates.CreateAuthority();
        SwapCertificateFiles(env, authority, Path.Combine(root.Path, "tls"));

        await using var silo = ChildProcess.StartDotnet(
            "silo without a token", Path.Combine(AppContext.BaseDirectory, "Cloud.Silo.dll"), [], env);
        var exitCode = await silo.ExitAsync(Eventually.Bound);

        Assert.True(exitCode != 0, $"the silo started without a token:\n{silo.Output}");
        Assert.True(silo.Output.Contains("no Entra token", StringComparison.Ordinal), silo.Output);
        Assert.Contains(
            $"no Entra token for PostgreSQL from the managed identity AZURE_CLIENT_ID={env["AZURE_CLIENT_ID"]}",
            silo.Output,
            StringComparison.Ordinal);
        Assert.Contains(EntraTokenPassword.Scope, silo.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", silo.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// The swap for the Key Vault secrets the template mounts as files: the same three settings, pointing at a silo
    /// certificate, its key and the authority written into <paramref name="directory"/>.
    /// </summary>
    private static void SwapCertificateFiles(Dictionary<string, string> env, TestCertificates authority, string directory)
    {
        foreach (var setting in (string[])["Silo__Tls__CertificateFile", "Silo__Tls__KeyFile", "Silo__Tls__AuthorityFile"])
            Assert.True(env.ContainsKey(setting), $"the template gives the silo no {setting}");
        Directory.CreateDirectory(directory);
        var (certificate, key) = authority.IssueSilo("replica").WriteTo(directory, "silo");
        env["Silo__Tls__CertificateFile"] = certificate;
        env["Silo__Tls__KeyFile"] = key;
        env["Silo__Tls__AuthorityFile"] = authority.WriteAuthority(directory);
    }

    /// <summary>
    /// Each replica runs as its host's user (when the bed has users of its own: as root), with its data directory
    /// private to that user, as separate hosts would be.
    /// </summary>
    private static void AssertEachReplicaRunsAsItsHostsUser(Bed bed)
    {
        if (!bed.SeparateUsers) return;
        for (var i = 0; i < bed.Hosts.Count; i++)
        {
            var host = bed.Hosts[i];
            var uidLine = File.ReadAllLines($"/proc/{bed.ProcessId(i)}/status").Single(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            Assert.Equal(host.Uid.ToString(System.Globalization.CultureInfo.InvariantCulture), uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]);
            Assert.Equal(
                UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute,
                File.GetUnixFileMode(host.Directory));
        }
    }

    private static async Task AssertProbesAnswerAsync(SiloContainerSpec spec, IPAddress host)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        foreach (var probe in spec.Probes)
        {
            var uri = $"http://{host}:{probe.Port}{probe.Path}";
            await Eventually.TrueAsync(
                async () =>
                {
                    try { return (await http.GetAsync(uri)).StatusCode == HttpStatusCode.OK; }
                    catch (HttpRequestException) { return false; }
                },
                $"{probe.Type} probe {uri}");
        }
    }

    private static async Task NbdWriteAsync(IPEndPoint endPoint, string volume, long offset, byte[] data)
    {
        await using var nbd = await RawNbdClient.OpenAsync(endPoint, volume);
        var reply = await nbd.CommandAsync(NbdCmdWrite, 1, (ulong)offset, (uint)data.Length, NbdFlagFua, data);
        Assert.Equal(0u, reply.Error);
        await nbd.DisconnectAsync();
    }

    private static async Task<byte[]> NbdReadAsync(IPEndPoint endPoint, string volume, long offset, int length)
    {
        await using var nbd = await RawNbdClient.OpenAsync(endPoint, volume);
        var reply = await nbd.ReadBlockAsync(2, (ulong)offset, (uint)length);
        Assert.Equal(0u, reply.Error);
        await nbd.DisconnectAsync();
        return reply.Data!;
    }

    private static async Task<byte[]> SdkReadAsync(CloudClient client, string volume, long offset, int length)
    {
        // The first read after a silo's death may meet the cluster still declaring it dead; a request that fails
        // meanwhile is asked again, and the bound stops a broken run.
        var buffer = new byte[length];
        Exception? last = null;
        var read = await Eventually.WithinAsync(
            async () =>
            {
                try
                {
                    var handle = await client.OpenVolumeAsync(volume);
                    await handle.ReadAsync(offset, buffer);
                    return true;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    last = ex;
                    return false;
                }
            },
            StartTimeout,
            TimeSpan.FromMilliseconds(250));
        Assert.True(read, $"the volume did not read through the SDK within {StartTimeout}: {last}");
        return buffer;
    }

    /// <summary>
    /// A fresh database owned by a role that signs in only with a password (scram-sha-256), which is the token the
    /// fake identity hands out: as Azure Database for PostgreSQL checks the Entra token of the silo identity.
    /// </summary>
    private static async Task<(string ConnectionString, string Token)> TokenRoleAsync(PostgresServer postgres)
    {
        var token = $"entra-{Guid.NewGuid():N}";
        const string role = "cloudprod_silo_id";
        var database = new NpgsqlConnectionStringBuilder(await postgres.CreateDatabaseAsync("deployed")).Database!;
        await using (var admin = new NpgsqlConnection(postgres.ConnectionString()))
        {
            await admin.OpenAsync();
            foreach (var sql in (string[])[$"CREATE ROLE {role} LOGIN PASSWORD '{token}'",
                $"ALTER DATABASE {database} OWNER TO {role}"])
            {
                await using var command = new NpgsqlCommand(sql, admin);
                await command.ExecuteNonQueryAsync();
            }
        }
        var hba = Path.Combine(postgres.RootDirectory, "data", "pg_hba.conf");
        await File.WriteAllLinesAsync(
            hba, [$"host all {role} 127.0.0.1/32 scram-sha-256", .. await File.ReadAllLinesAsync(hba)]);
        await using (var admin = new NpgsqlConnection(postgres.ConnectionString()))
        {
            await admin.OpenAsync();
            await using var reload = new NpgsqlCommand("SELECT pg_reload_conf()", admin);
            await reload.ExecuteNonQueryAsync();
        }
        var connectionString = new NpgsqlConnectionStringBuilder(postgres.ConnectionString(database))
        {
            Username = role,
        }.ConnectionString;
        return (connectionString, token);
    }

    /// <summary>A loopback address of its own for one silo, as each replica has its own IP.</summary>
    private static IPAddress NewHostAddress() =>
        new([127, 77, (byte)Random.Shared.Next(1, 255), (byte)Random.Shared.Next(1, 255)]);

    private sealed class TemporaryDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("cloud-deployed-").FullName;

        public void Dispose()
        {
            try { Directory.Delete(Path, recursive: true); }
            catch (IOException) { /* a killed silo's files may linger a moment; /tmp is cleaned by the OS */ }
        }
    }
}

/// <summary>
/// A managed identity token endpoint as Azure Container Apps and App Service give one to a container
/// (<c>IDENTITY_ENDPOINT</c>, <c>IDENTITY_HEADER</c>): the real <c>ManagedIdentityCredential</c> in the silo asks it
/// for tokens, and it hands out one fixed token for PostgreSQL's scope.
/// </summary>
internal sealed class FakeManagedIdentity : IAsyncDisposable
{
    public const string EndpointVariable = "IDENTITY_ENDPOINT";
    public const string HeaderVariable = "IDENTITY_HEADER";

    private readonly HttpListener _listener;
    private readonly string _token;
    private readonly Task _serving;
    private int _served;

    private FakeManagedIdentity(HttpListener listener, string endpoint, string token)
    {
        _listener = listener;
        Endpoint = endpoint;
        _token = token;
        _serving = ServeAsync();
    }

    public string Endpoint { get; }
    public string Header { get; } = Guid.NewGuid().ToString("N");
    public int TokensServed => Volatile.Read(ref _served);

    public static FakeManagedIdentity Start(string token)
    {
        var port = FreePorts.Next();
        var listener = new HttpListener();
        var endpoint = $"http://127.0.0.1:{port}/msi/token/";
        listener.Prefixes.Add(endpoint);
        listener.Start();
        return new FakeManagedIdentity(listener, endpoint, token);
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException) { return; }
            var resource = context.Request.QueryString["resource"] ?? "";
            var body = context.Request.Headers["X-IDENTITY-HEADER"] != Header
                ? (401, "{\"error\":\"bad identity header\"}")
                : !EntraTokenPassword.Scope.StartsWith(resource.TrimEnd('/'), StringComparison.Ordinal)
                    ? (400, $"{{\"error\":\"this test identity serves PostgreSQL only, not '{resource}'\"}}")
                    : (200, JsonSerializer.Serialize(new Dictionary<string, object>
                    {
                        ["access_token"] = _token,
                        ["expires_on"] = DateTimeOffset.UtcNow.AddHours(24).ToUnixTimeSeconds().ToString(
                            System.Globalization.CultureInfo.InvariantCulture),
                        ["resource"] = resource,
                        ["token_type"] = "Bearer",
                        ["client_id"] = context.Request.QueryString["client_id"] ?? "",
                    }));
            if (body.Item1 == 200) Interlocked.Increment(ref _served);
            context.Response.StatusCode = body.Item1;
            context.Response.ContentType = "application/json";
            var bytes = Encoding.UTF8.GetBytes(body.Item2);
            await context.Response.OutputStream.WriteAsync(bytes);
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
