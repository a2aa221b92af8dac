using System.Diagnostics;
using System.Globalization;
using System.Net;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;
using Npgsql;
using Orleans.Runtime;

namespace Cloud.HostBed;

/// <summary>One host of the bed: its own loopback address, Unix user and 0700 directory.</summary>
/// <param name="Index">0-based position in the bed.</param>
/// <param name="Name">The silo's stable name (<c>h1</c>, <c>h2</c>, ...).</param>
/// <param name="Address">The host's address (127.0.0.11, 127.0.0.12, ...).</param>
/// <param name="User">The Unix user its silo runs as.</param>
/// <param name="Uid">That user's uid.</param>
/// <param name="Gid">That user's gid.</param>
/// <param name="Directory">The host's private directory (mode 0700, owned by <paramref name="User"/>).</param>
public sealed record BedHost(int Index, string Name, IPAddress Address, string User, int Uid, int Gid, string Directory)
{
    /// <summary>The silo's data directory, inside the host's private directory.</summary>
    public string DataDirectory => Path.Combine(Directory, "data");

    /// <summary>The host's disk pool, inside its private directory (used when the bed has pools).</summary>
    public string PoolDirectory => Path.Combine(Directory, "pool");
}

/// <summary>What a bed is made of.</summary>
public sealed class HostBedOptions
{
    /// <summary>Default for <see cref="Hosts"/>.</summary>
    public const int DefaultHosts = 3;

    /// <summary>Most hosts a bed has: addresses 127.0.0.11 up to 127.0.0.(10 + this).</summary>
    public const int MaxHosts = 32;

    /// <summary>Number of hosts (1-<see cref="MaxHosts"/>).</summary>
    public int Hosts { get; set; } = DefaultHosts;

    /// <summary>The Orleans cluster id every silo and client of the bed shares.</summary>
    public string ClusterId { get; set; } = "bed";

    /// <summary>
    /// Default for <see cref="PartitionTargetBytes"/>: small, so a small volume spreads its partition-lock grains over
    /// every host.
    /// </summary>
    public const long DefaultPartitionTargetBytes = 1L << 20;

    /// <summary>Partition size, which every silo of the bed is given.</summary>
    public long PartitionTargetBytes { get; set; } = DefaultPartitionTargetBytes;

    /// <summary>
    /// The page-blob account every host uses (an Azurite connection string in tests), or null for none.
    /// </summary>
    public string? PageBlobConnectionString { get; set; }

    /// <summary>Serve NBD on every host's address (one port for all hosts).</summary>
    public bool Nbd { get; set; } = true;

    /// <summary>Give every host a disk pool, <see cref="BedHost.PoolDirectory"/> (<c>--disk-pool</c>).</summary>
    public bool DiskPools { get; set; }

    /// <summary>Extra environment for every silo.</summary>
    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);

    /// <summary>Extra environment for one host's silo, by host name (<c>h1</c>, ...), over <see cref="Environment"/>.</summary>
    public Dictionary<string, Dictionary<string, string>> HostEnvironment { get; } = new(StringComparer.Ordinal);

    /// <summary>Mutual TLS on every silo (the bed's addresses are loopback, so it is off unless given), or null.</summary>
    public HostBedTls? Tls { get; set; }
}

/// <summary>
/// The bed's TLS: the cluster authority, each host's certificate and key (written into that host's 0700 directory,
/// mode 0600 and owned by its user, so no other host can read a key), and the certificate the bed's clients present.
/// </summary>
public sealed class HostBedTls
{
    /// <summary>The cluster authority's certificate, PEM.</summary>
    public required string AuthorityPem { get; init; }

    /// <summary>Host's certificate and private key, PEM; called at each start of the host.</summary>
    public required Func<BedHost, (string CertificatePem, string KeyPem)> HostCertificate { get; init; }

    /// <summary>What <see cref="HostBed.ConnectAsync"/> and <see cref="HostBed.ConnectToAsync"/> present.</summary>
    public required ClusterCertificates Client { get; init; }
}

/// <summary>
/// Several hosts on one machine: N silo processes on PostgreSQL clustering, each host with its own loopback address
/// (127.0.0.11, 127.0.0.12, ...), its own Unix user (<c>cloud-h1</c>, ... created when run as root, as CI does) and
/// its own data directory (mode 0700, owned by that user), so nothing can lean on a shared file by accident. All hosts
/// use the same port numbers, as separate machines would. Each host runs its own copy of the silo's binaries.
/// </summary>
public sealed class HostBed : IAsyncDisposable
{
    /// <summary>
    /// Generous bound for a silo to start on a loaded 2-core machine; it only stops a broken run from hanging.
    /// </summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    /// <summary>Bound on a graceful stop (drain included).</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The first host's last address octet minus one: host 1 is 127.0.0.11.</summary>
    public const int AddressBase = 10;

    private readonly HostBedOptions _options;
    private readonly ChildProcess?[] _processes;
    private readonly Action<string>? _log;
    private readonly string _dotnet;

    private HostBed(
        string connectionString,
        HostBedOptions options,
        string baseDirectory,
        BedHost[] hosts,
        int[] ports,
        string dotnet,
        Action<string>? log)
    {
        ConnectionString = connectionString;
        _options = options;
        BaseDirectory = baseDirectory;
        Hosts = hosts;
        SiloPort = ports[0];
        GatewayPort = ports[1];
        NbdPort = ports[2];
        _dotnet = dotnet;
        _log = log;
        _processes = new ChildProcess?[hosts.Length];
    }

    /// <summary>The clustering and state database.</summary>
    public string ConnectionString { get; }

    /// <summary>The cluster id.</summary>
    public string ClusterId => _options.ClusterId;

    /// <summary>The partition size every silo of the bed is given.</summary>
    public long PartitionTargetBytes => _options.PartitionTargetBytes;

    /// <summary>The bed's directory: the silo binaries and one private directory per host.</summary>
    public string BaseDirectory { get; }

    /// <summary>The hosts.</summary>
    public IReadOnlyList<BedHost> Hosts { get; }

    /// <summary>Silo-to-silo port, the same on every host.</summary>
    public int SiloPort { get; }

    /// <summary>Gateway port, the same on every host.</summary>
    public int GatewayPort { get; }

    /// <summary>NBD port, the same on every host.</summary>
    public int NbdPort { get; }

    /// <summary>True when the hosts run as users of their own (only root can make them).</summary>
    public bool SeparateUsers { get; private set; }

    /// <summary>Host <paramref name="index"/>'s gateway, HOST:PORT.</summary>
    public string Gateway(int index) => $"{Hosts[index].Address}:{GatewayPort}";

    /// <summary>Host <paramref name="index"/>'s NBD endpoint.</summary>
    public IPEndPoint NbdEndPoint(int index) => new(Hosts[index].Address, NbdPort);

    /// <summary>True while host <paramref name="index"/>'s silo runs.</summary>
    public bool IsRunning(int index) => _processes[index] is { HasExited: false };

    /// <summary>Host <paramref name="index"/>'s silo PID (while it runs).</summary>
    public int ProcessId(int index)
        => _processes[index]?.Id ?? throw new InvalidOperationException($"{Hosts[index].Name} was never started");

    /// <summary>Host <paramref name="index"/>'s silo output so far (for failure messages).</summary>
    public string OutputOf(int index) => _processes[index]?.Output ?? "";

    /// <summary>The index of the host with <paramref name="address"/>, or -1.</summary>
    public int IndexOf(IPAddress address) => Hosts.ToList().FindIndex(h => h.Address.Equals(address));

    /// <summary>
    /// Creates a database on <paramref name="server"/>, makes the hosts, applies the schema and starts every silo.
    /// </summary>
    public static async Task<HostBed> StartAsync(
        PostgresServer server,
        HostBedOptions options,
        Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Hosts is < 1 or > HostBedOptions.MaxHosts)
            throw new ArgumentOutOfRangeException(
                nameof(options), $"Hosts {options.Hosts} is not allowed; use 1-{HostBedOptions.MaxHosts}");
        var connectionString = await server.CreateDatabaseAsync("bed_" + Guid.NewGuid().ToString("N"))
            .ConfigureAwait(false);
        var bed = Create(connectionString, options, log);
        try
        {
            // The schema first, alone: the others then start against a ready database.
            await bed.StartHostAsync(0, applySchema: true).ConfigureAwait(false);
            await Task.WhenAll(Enumerable.Range(1, options.Hosts - 1).Select(i => bed.StartHostAsync(i)))
                .ConfigureAwait(false);
            await bed.WaitForActiveAsync(options.Hosts).ConfigureAwait(false);
        }
        catch
        {
            await bed.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return bed;
    }

    /// <summary>
    /// The silo the bed runs: the repository's build, or the directory <c>CLOUD_BED_SILO</c> names (a published silo,
    /// for instance ReadyToRun-compiled, whose first minutes the delegation bench can then compare).
    /// </summary>
    private static string SiloBuild()
    {
        if (Environment.GetEnvironmentVariable("CLOUD_BED_SILO") is not { Length: > 0 } published)
            return Path.GetDirectoryName(Repository.BuiltAssembly("silo", "Cloud.Silo.dll"))!;
        if (!File.Exists(Path.Combine(published, "Cloud.Silo.dll")))
            throw new FileNotFoundException(
                $"CLOUD_BED_SILO is '{published}', which holds no Cloud.Silo.dll; name a directory of a published silo");
        return published;
    }

    private static HostBed Create(string connectionString, HostBedOptions options, Action<string>? log)
    {
        var root = Directory.CreateTempSubdirectory("cloud-bed-").FullName;
        // Traversable by every host's user; each host's own directory below is 0700.
        File.SetUnixFileMode(root, (UnixFileMode)0b111_101_101);
        var silo = Path.Combine(root, "silo");
        CopyDirectory(SiloBuild(), silo);
        var separate = UnixUsers.IsRoot;
        var hosts = new BedHost[options.Hosts];
        for (var i = 0; i < hosts.Length; i++)
        {
            var name = $"h{i + 1}";
            var user = separate ? $"cloud-{name}" : Environment.UserName;
            var (uid, gid) = separate ? UnixUsers.Ensure(user) : UnixUsers.Lookup(user) ?? (0, 0);
            var dir = Path.Combine(root, name);
            Directory.CreateDirectory(Path.Combine(dir, "data"));
            Directory.CreateDirectory(Path.Combine(dir, "tmp"));
            Directory.CreateDirectory(Path.Combine(dir, "pool"));
            if (separate) Chown(dir, uid, gid);
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            hosts[i] = new BedHost(i, name, IPAddress.Parse($"127.0.0.{AddressBase + i + 1}"), user, uid, gid, dir);
        }
        var bed = new HostBed(
            connectionString, options, root, hosts, FreePorts.Next(3), FindDotnet(), log) { SeparateUsers = separate };
        log?.Invoke(
            $"bed in {root}: {string.Join(", ", hosts.Select(h => $"{h.Name} {h.Address} as {h.User}"))}; silo port {bed.SiloPort}, gateway {bed.GatewayPort}, NBD {bed.NbdPort}");
        return bed;
    }

    /// <summary>
    /// Starts (or restarts, with the same address, user and directory) host <paramref name="index"/>'s silo, and waits
    /// until it is up.
    /// </summary>
    public async Task StartHostAsync(int index, bool applySchema = false)
    {
        if (IsRunning(index)) throw new InvalidOperationException($"{Hosts[index].Name} is already running");
        if (_processes[index] is { } old) await old.DisposeAsync().ConfigureAwait(false);
        var host = Hosts[index];
        List<string> args =
        [
            $"--reuid={host.Uid}", $"--regid={host.Gid}", "--clear-groups", "--",
            _dotnet, Path.Combine(BaseDirectory, "silo", "Cloud.Silo.dll"),
            "--clustering", "postgres", "--connection", ConnectionString, "--cluster-id", ClusterId,
            "--name", host.Name, "--host-name", host.Name, "--address", host.Address.ToString(), "--data",
            host.DataDirectory,
            "--silo-port", SiloPort.ToString(CultureInfo.InvariantCulture),
            "--gateway-port", GatewayPort.ToString(CultureInfo.InvariantCulture),
            "--nbd-port", (_options.Nbd ? NbdPort : 0).ToString(CultureInfo.InvariantCulture),
        ];
        if (applySchema) args.Add("--init-schema");
        if (_options.DiskPools) args.AddRange(["--disk-pool", host.PoolDirectory]);
        if (_options.Tls is { } tls) args.AddRange(WriteTlsFiles(host, tls));
        var environment = new Dictionary<string, string>(_options.Environment, StringComparer.Ordinal)
        {
            ["HOME"] = host.Directory,
            ["TMPDIR"] = Path.Combine(host.Directory, "tmp"),
            ["DOTNET_CLI_HOME"] = host.Directory,
            ["DOTNET_gcServer"] = "0", // several silos on 2 cores: server GC's per-core heaps only add memory
            ["Cloud__PartitionTargetBytes"] = _options.PartitionTargetBytes.ToString(CultureInfo.InvariantCulture),
        };
        if (_options.PageBlobConnectionString is { } blobs) environment["PageBlobs__ConnectionString"] = blobs;
        foreach (var (key, value) in _options.HostEnvironment.GetValueOrDefault(host.Name) ?? []) environment[key] = value;
        var process = ChildProcess.Start(host.Name, "setpriv", args, environment);
        _processes[index] = process;
        await process.WaitForOutputAsync($"Cloud silo '{host.Name}' up", StartTimeout).ConfigureAwait(false);
        _log?.Invoke($"{DateTime.UtcNow:HH:mm:ss.fff} started {host.Name} at {host.Address} (pid {process.Id})");
    }

    /// <summary>
    /// Writes host's certificate, key and the authority into its private directory (the key mode 0600, all owned by
    /// the host's user) and returns the silo's TLS switches for them.
    /// </summary>
    private string[] WriteTlsFiles(BedHost host, HostBedTls tls)
    {
        var dir = Path.Combine(host.Directory, "tls");
        Directory.CreateDirectory(dir);
        var (certificatePem, keyPem) = tls.HostCertificate(host);
        string certificate = Path.Combine(dir, "silo.crt"), key = Path.Combine(dir, "silo.key"),
            authority = Path.Combine(dir, "ca.crt");
        File.WriteAllText(key, "");
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(key, keyPem);
        File.WriteAllText(certificate, certificatePem);
        File.WriteAllText(authority, tls.AuthorityPem);
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (SeparateUsers) Chown(dir, host.Uid, host.Gid);
        return ["--tls", "on", "--tls-cert", certificate, "--tls-key", key, "--tls-ca", authority];
    }

    /// <summary>
    /// Makes the bed's hosts (a Unix user each when root, a private 0700 directory each, the silo binaries) without a
    /// database and without starting any silo: for a test that starts the silos itself, configured some other way
    /// (the deployment contract run starts them with a container's environment, <see cref="StartHostFromEnvironmentAsync"/>).
    /// </summary>
    public static HostBed CreateHosts(HostBedOptions options, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Create(connectionString: "", options, log);
    }

    /// <summary>
    /// Gives everything under host <paramref name="index"/>'s directory to that host's user (after the test wrote files
    /// there, such as its keys), so that the host, and no other, reads them.
    /// </summary>
    public void HandOver(int index)
    {
        var host = Hosts[index];
        if (SeparateUsers) Chown(host.Directory, host.Uid, host.Gid);
    }

    /// <summary>
    /// Starts host <paramref name="index"/>'s silo as a container image's entry point would: <c>Cloud.Silo</c> with no
    /// arguments, configured by <paramref name="environment"/> alone, as the host's user, with its directory as home
    /// and temporary directory (what the platform gives a container); waits for <paramref name="readyLine"/>.
    /// </summary>
    public async Task StartHostFromEnvironmentAsync(
        int index,
        IReadOnlyDictionary<string, string> environment,
        string readyLine)
    {
        ArgumentNullException.ThrowIfNull(environment);
        if (IsRunning(index)) throw new InvalidOperationException($"{Hosts[index].Name} is already running");
        if (_processes[index] is { } old) await old.DisposeAsync().ConfigureAwait(false);
        var host = Hosts[index];
        var env = new Dictionary<string, string>(environment, StringComparer.Ordinal)
        {
            ["HOME"] = host.Directory,
            ["TMPDIR"] = Path.Combine(host.Directory, "tmp"),
            ["DOTNET_CLI_HOME"] = host.Directory,
        };
        var process = ChildProcess.Start(
            host.Name,
            "setpriv",
            [
                $"--reuid={host.Uid}", $"--regid={host.Gid}", "--clear-groups", "--",
                _dotnet, Path.Combine(BaseDirectory, "silo", "Cloud.Silo.dll"),
            ],
            env);
        _processes[index] = process;
        await process.WaitForOutputAsync(readyLine, StartTimeout).ConfigureAwait(false);
        _log?.Invoke($"{DateTime.UtcNow:HH:mm:ss.fff} started {host.Name} from its environment as {host.User} (pid {process.Id})");
    }

    /// <summary>SIGKILL: a host's crash, with no drain and no goodbye to the cluster.</summary>
    public async Task KillAsync(int index)
    {
        var process = _processes[index]
            ?? throw new InvalidOperationException($"{Hosts[index].Name} was never started");
        await process.KillAsync().ConfigureAwait(false);
        _log?.Invoke($"{DateTime.UtcNow:HH:mm:ss.fff} killed {Hosts[index].Name} (pid {process.Id})");
    }

    /// <summary>SIGTERM: a graceful stop; returns the exit code.</summary>
    public async Task<int> StopAsync(int index)
    {
        var process = _processes[index]
            ?? throw new InvalidOperationException($"{Hosts[index].Name} was never started");
        var code = await process.TerminateAsync(StopTimeout).ConfigureAwait(false);
        _log?.Invoke($"{DateTime.UtcNow:HH:mm:ss.fff} stopped {Hosts[index].Name} (exit {code})");
        return code;
    }

    /// <summary>One row of the membership table.</summary>
    public sealed record Member(string SiloName, IPAddress Address, int Port, int Status, string HostName);

    /// <summary>Status value of an active silo in the membership table.</summary>
    public const int ActiveStatus = 3;

    /// <summary>The membership table of this cluster.</summary>
    public async Task<IReadOnlyList<Member>> MembershipAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync().ConfigureAwait(false);
        await using var command = new NpgsqlCommand(
            "SELECT silo_name, address, port, status, host_name FROM orleans_membership WHERE deployment_id = @c ORDER BY silo_name, start_time", connection);
        command.Parameters.AddWithValue("c", ClusterId);
        var rows = new List<Member>();
        await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
        while (await reader.ReadAsync().ConfigureAwait(false))
            rows.Add(
                new Member(
                    reader.GetString(0),
                    IPAddress.Parse(reader.GetString(1)),
                    reader.GetInt32(2),
                    reader.GetInt32(3),
                    reader.GetString(4)));
        return rows;
    }

    /// <summary>Waits until the membership table lists exactly <paramref name="expected"/> active silos.</summary>
    public async Task WaitForActiveAsync(int expected)
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        int active;
        while ((active = (await MembershipAsync().ConfigureAwait(false)).Count(m => m.Status == ActiveStatus))
            != expected)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException(
                    $"{active} active silos in cluster '{ClusterId}' instead of {expected} after {StartTimeout}");
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The index of the host where <paramref name="grain"/> is active, or -1 when it is not active (or lives on a
    /// silo that is not one of the bed's hosts).
    /// </summary>
    public async Task<int> HostOfAsync(CloudClient client, IAddressable grain)
    {
        ArgumentNullException.ThrowIfNull(client);
        var address = await client.Cluster.GetGrain<IManagementGrain>(0).GetActivationAddress(grain)
            .ConfigureAwait(false);
        return address is null ? -1 : IndexOf(address.Endpoint.Address);
    }

    /// <summary>
    /// The index of the host of the volume catalog grain (key 0), activating it first by listing the volumes.
    /// </summary>
    /// <exception cref="InvalidOperationException">The catalog is not active on any of the bed's hosts.</exception>
    public async Task<int> CatalogHostAsync(CloudClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        await client.ListVolumesAsync().ConfigureAwait(false);
        var host = await HostOfAsync(client, client.Cluster.GetGrain<IVolumeCatalogGrain>(0)).ConfigureAwait(false);
        return host >= 0
            ? host
            : throw new InvalidOperationException("the volume catalog grain is not active on any host of the bed");
    }

    /// <summary>
    /// A client bound to host <paramref name="index"/>'s gateway alone (that host is the first server of its writes).
    /// </summary>
    public Task<CloudClient> ConnectToAsync(int index)
        => CloudClient.ConnectAsync(Gateway(index), ClusterId, ClusterId, _options.Tls?.Client);

    /// <summary>
    /// A client that finds the gateways through PostgreSQL (and moves to another when its gateway dies).
    /// </summary>
    public Task<CloudClient> ConnectAsync()
        => CloudClient.ConnectPostgresAsync(ConnectionString, ClusterId, ClusterId, _options.Tls?.Client);

    /// <summary>
    /// With CLOUD_BED_LOGS=DIR set, writes each host's output as it is now (its last part) to
    /// <c>DIR/{tag}-hN.log</c>, for a post-mortem of a failure or of a slow moment; without it, does nothing.
    /// </summary>
    public async Task KeepLogsAsync(string tag)
    {
        if (Environment.GetEnvironmentVariable("CLOUD_BED_LOGS") is not { Length: > 0 } logs) return;
        Directory.CreateDirectory(logs);
        for (var i = 0; i < _processes.Length; i++)
            await File.WriteAllTextAsync(Path.Combine(logs, $"{tag}-h{i + 1}.log"), OutputOf(i)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        // Each host's output after the bed is gone, for a failure's post-mortem.
        await KeepLogsAsync(ClusterId).ConfigureAwait(false);
        foreach (var process in _processes)
        {
            if (process is not null) await process.DisposeAsync().ConfigureAwait(false);
        }
        NpgsqlConnection.ClearAllPools();
        try { Directory.Delete(BaseDirectory, recursive: true); }
        catch (IOException) { /* best effort: a temporary directory */ }
        catch (UnauthorizedAccessException) { /* best effort */ }
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    private static void Chown(string path, int uid, int gid)
    {
        using var process = Process.Start("chown", ["-R", $"{uid}:{gid}", path])
            ?? throw new InvalidOperationException("cannot start chown");
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"chown -R {uid}:{gid} {path} failed (exit {process.ExitCode})");
    }

    /// <summary>
    /// The dotnet host's absolute path: the silo runs as another user, whose PATH may not lead to it.
    /// </summary>
    private static string FindDotnet()
    {
        foreach (var candidate in new[]
        {
            Environment.GetEnvironmentVariable("DOTNET_HOST_PATH"), "/usr/share/dotnet/dotnet", "/usr/lib/dotnet/dotnet"
        })
        {
            if (candidate is { Length: > 0 } && File.Exists(candidate) && Path.GetFileName(candidate) == "dotnet")
                return new FileInfo(candidate).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? candidate;
        }
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, "dotnet");
            if (File.Exists(candidate))
                return new FileInfo(candidate).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? candidate;
        }
        throw new FileNotFoundException("no dotnet host found (DOTNET_HOST_PATH, /usr/share/dotnet, PATH)");
    }
}
