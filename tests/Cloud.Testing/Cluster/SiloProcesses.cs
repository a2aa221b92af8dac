using System.Globalization;
using Cloud.Client;
using Npgsql;

namespace Cloud.Testing;

/// <summary>
/// A cluster of real silo processes (<c>dotnet silo/bin/.../Cloud.Silo.dll</c>) on PostgreSQL clustering: each with
/// its own name and ports, all sharing one temporary data directory (the file-backed member disks, the catalog and
/// the partition clocks), as several silos of one machine do in production.
/// </summary>
public sealed class SiloProcesses : IAsyncDisposable
{
    /// <summary>
    /// Generous bound for a silo to start on a loaded 2-core machine; it only stops a broken run from hanging.
    /// </summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    /// <summary>Bound on a graceful stop (drain included).</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(60);

    /// <summary>How often the membership table is read while waiting for silos to join or leave.</summary>
    private static readonly TimeSpan MembershipPollInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Partition size for the tests: small, so one small volume spreads its partition-lock grains over every silo.
    /// </summary>
    public const long PartitionTargetBytes = 1L << 20;

    private readonly ChildProcess?[] _processes;
    private readonly int[] _siloPorts;
    private readonly int[] _gatewayPorts;
    private readonly int[] _nbdPorts;
    private bool _nbd;
    private readonly Dictionary<string, string>[] _environment;
    private readonly Action<string>? _log;

    private SiloProcesses(string connectionString, string clusterId, int count, Action<string>? log)
    {
        ConnectionString = connectionString;
        ClusterId = clusterId;
        _log = log;
        DataDirectory = Directory.CreateTempSubdirectory("cloud-cluster-").FullName;
        _processes = new ChildProcess?[count];
        // Chosen together, so that no two are the same (an NBD port is only bound if EnableNbd is called).
        var ports = FreePorts.Next(count * 3);
        _siloPorts = [.. Enumerable.Range(0, count).Select(i => ports[3 * i])];
        _gatewayPorts = [.. Enumerable.Range(0, count).Select(i => ports[(3 * i) + 1])];
        _nbdPorts = [.. Enumerable.Range(0, count).Select(i => ports[(3 * i) + 2])];
        _environment = [.. Enumerable.Range(0, count).Select(_ => new Dictionary<string, string>
        {
            ["Cloud__PartitionTargetBytes"] = PartitionTargetBytes.ToString(CultureInfo.InvariantCulture),
            ["DOTNET_gcServer"] = "0", // several silos on 2 cores: server GC's per-core heaps only add memory
        })];
    }

    /// <summary>The clustering database.</summary>
    public string ConnectionString { get; }

    /// <summary>The cluster id every silo and client uses.</summary>
    public string ClusterId { get; }

    /// <summary>The shared data directory.</summary>
    public string DataDirectory { get; }

    /// <summary>Number of silo slots.</summary>
    public int Count => _processes.Length;

    /// <summary>The stable name of silo <paramref name="index"/>.</summary>
    public static string NameOf(int index) => $"s{index}";

    /// <summary>Silo <paramref name="index"/>'s silo-to-silo port.</summary>
    public int SiloPort(int index) => _siloPorts[index];

    /// <summary>Silo <paramref name="index"/>'s gateway, HOST:PORT.</summary>
    public string Gateway(int index) => $"127.0.0.1:{_gatewayPorts[index]}";

    /// <summary>
    /// Gives every silo an NBD endpoint on 127.0.0.1 (off by default); call it before the silos start (from
    /// <see cref="StartAsync"/>'s <c>configure</c>).
    /// </summary>
    public void EnableNbd() => _nbd = true;

    /// <summary>The NBD URI of <paramref name="export"/> on silo <paramref name="index"/> (after <see cref="EnableNbd"/>).</summary>
    public string NbdUri(int index, string export) =>
        _nbd
            ? string.Create(CultureInfo.InvariantCulture, $"nbd://127.0.0.1:{_nbdPorts[index]}/{export}")
            : throw new InvalidOperationException("the silos have no NBD endpoint: call EnableNbd before they start");

    /// <summary>The index of the silo listening on <paramref name="siloPort"/>, or -1.</summary>
    public int IndexOfPort(int siloPort) => Array.IndexOf(_siloPorts, siloPort);

    /// <summary>True while silo <paramref name="index"/>'s process runs.</summary>
    public bool IsRunning(int index) => _processes[index] is { HasExited: false };

    /// <summary>Extra environment for silo <paramref name="index"/> (takes effect at its next start).</summary>
    public void SetEnvironment(int index, string key, string value) => _environment[index][key] = value;

    /// <summary>
    /// Creates a database on <paramref name="server"/>, applies the schema and starts <paramref name="count"/> silos.
    /// </summary>
    public static async Task<SiloProcesses> StartAsync(PostgresServer server, string name, int count, Action<string>? log = null,
        Action<SiloProcesses>? configure = null)
    {
        var connectionString = await server.CreateDatabaseAsync("c_" + Guid.NewGuid().ToString("N")).ConfigureAwait(false);
        var silos = new SiloProcesses(connectionString, name, count, log);
        configure?.Invoke(silos);
        try
        {
            // The first silo applies the schema; the others check for it at start, so they start once it is there.
            await silos.StartSiloAsync(0, applySchema: true).ConfigureAwait(false);
            await Task.WhenAll(Enumerable.Range(1, count - 1).Select(i => silos.StartSiloAsync(i))).ConfigureAwait(false);
            await silos.WaitForActiveAsync(count).ConfigureAwait(false);
        }
        catch
        {
            await silos.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return silos;
    }

    /// <summary>
    /// Starts (or restarts, with the same name and ports) silo <paramref name="index"/> and waits until it says it is
    /// up.
    /// </summary>
    public async Task StartSiloAsync(int index, bool applySchema = false)
    {
        if (IsRunning(index)) throw new InvalidOperationException($"silo {NameOf(index)} is already running");
        if (_processes[index] is { } old) await old.DisposeAsync().ConfigureAwait(false);
        List<string> args =
        [
            "--clustering", "postgres", "--connection", ConnectionString, "--cluster-id", ClusterId,
            "--name", NameOf(index), "--data", DataDirectory,
            "--nbd-port", (_nbd ? _nbdPorts[index] : 0).ToString(CultureInfo.InvariantCulture),
            "--silo-port", _siloPorts[index].ToString(CultureInfo.InvariantCulture),
            "--gateway-port", _gatewayPorts[index].ToString(CultureInfo.InvariantCulture),
        ];
        // Every silo may apply the schema: it is idempotent and serialised by an advisory lock.
        if (applySchema) args.Add("--init-schema");
        var process = ChildProcess.StartDotnet(NameOf(index), SiloAssembly.Path, args, _environment[index]);
        _processes[index] = process;
        await process.WaitForOutputAsync($"Cloud silo '{NameOf(index)}' up", StartTimeout).ConfigureAwait(false);
        _log?.Invoke($"{DateTime.UtcNow:HH:mm:ss.fff} started {NameOf(index)} (pid {process.Id})");
    }

    /// <summary>SIGKILL: a crash, with no drain and no goodbye to the cluster.</summary>
    public async Task KillAsync(int index)
    {
        var process = _processes[index] ?? throw new InvalidOperationException($"silo {NameOf(index)} was never started");
        await process.KillAsync().ConfigureAwait(false);
        _log?.Invoke($"{DateTime.UtcNow:HH:mm:ss.fff} killed {NameOf(index)} (pid {process.Id})");
    }

    /// <summary>SIGTERM: a graceful stop; returns the exit code.</summary>
    public async Task<int> StopAsync(int index)
    {
        var process = _processes[index] ?? throw new InvalidOperationException($"silo {NameOf(index)} was never started");
        var code = await process.TerminateAsync(StopTimeout).ConfigureAwait(false);
        _log?.Invoke($"{DateTime.UtcNow:HH:mm:ss.fff} stopped {NameOf(index)} (exit {code})");
        return code;
    }

    /// <summary>Silo <paramref name="index"/>'s output so far (for failure messages).</summary>
    public string OutputOf(int index) => _processes[index]?.Output ?? "";

    /// <summary>The last <paramref name="chars"/> characters of every silo's output, each under its name (for failure messages).</summary>
    public string OutputTails(int chars = 4000) => string.Join(
        "\n",
        Enumerable.Range(0, Count).Select(i =>
        {
            var output = OutputOf(i);
            return $"--- {NameOf(i)}:\n{(output.Length <= chars ? output : output[^chars..])}";
        }));

    /// <summary>
    /// Waits until the membership table lists exactly <paramref name="expected"/> active silos of this cluster.
    /// </summary>
    public Task WaitForActiveAsync(int expected) =>
        Eventually.ValueAsync(CountActiveAsync, active => active == expected, StartTimeout, MembershipPollInterval,
            active => $"{active} active silos in cluster '{ClusterId}' instead of {expected} after {StartTimeout}");

    /// <summary>Active silos in the membership table.</summary>
    public async Task<int> CountActiveAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync().ConfigureAwait(false);
        await using var command = new NpgsqlCommand("SELECT count(*) FROM orleans_membership WHERE deployment_id = @c AND status = 3", connection);
        command.Parameters.AddWithValue("c", ClusterId);
        return (int)(long)(await command.ExecuteScalarAsync().ConfigureAwait(false))!;
    }

    /// <summary>
    /// A client that finds the gateways through PostgreSQL (and moves to another when its gateway dies).
    /// </summary>
    public Task<CloudClient> ConnectAsync() => CloudClient.ConnectPostgresAsync(ConnectionString, ClusterId, ClusterId);

    /// <summary>
    /// A client bound to silo <paramref name="index"/>'s gateway alone (that silo is the first server of every write).
    /// </summary>
    public Task<CloudClient> ConnectToAsync(int index) => CloudClient.ConnectAsync(Gateway(index), ClusterId, ClusterId);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            if (process is not null) await process.DisposeAsync().ConfigureAwait(false);
        }
        NpgsqlConnection.ClearAllPools();
        try { Directory.Delete(DataDirectory, recursive: true); }
        catch (IOException) { /* best effort: a temp dir */ }
    }
}

/// <summary>
/// Finds the silo built in the repository (the project reference builds it; it is not copied next to the tests).
/// </summary>
public static class SiloAssembly
{
    private static readonly Lazy<string> Found = new(() => Repository.BuiltAssembly("silo", "Cloud.Silo.dll"));

    /// <summary>The full path of Cloud.Silo.dll.</summary>
    public static string Path => Found.Value;
}
