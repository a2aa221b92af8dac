using System.Globalization;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>
/// The real silo (<c>Cloud.Silo.dll</c>) as a child process on free ports with its own data directory.
/// </summary>
internal sealed class SiloProcess : IAsyncDisposable
{
    /// <summary>How long a silo may take to start on a busy 2-core machine.</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(2);

    private SiloProcess(ChildProcess process, string dataDirectory, int gatewayPort, int nbdPort, int httpPort)
    {
        Process = process;
        DataDirectory = dataDirectory;
        GatewayPort = gatewayPort;
        NbdPort = nbdPort;
        HttpPort = httpPort;
    }

    public ChildProcess Process { get; }
    public string DataDirectory { get; }
    public int GatewayPort { get; }
    public int NbdPort { get; }
    public int HttpPort { get; }
    public string Gateway => $"127.0.0.1:{GatewayPort}";
    public string NbdUri(string volume) => $"nbd://127.0.0.1:{NbdPort}/{volume}";

    /// <summary>Starts a silo on <paramref name="dataDirectory"/> and waits until it says it is up.</summary>
    /// <param name="environment">Extra settings as environment variables (e.g.
    /// <c>Cloud__InjectedDiskLatency</c>).</param>
    public static async Task<SiloProcess> StartAsync(
        string dataDirectory,
        string name = "s1",
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var ports = FreePorts.Next(4);
        var dll = Path.Combine(AppContext.BaseDirectory, "Cloud.Silo.dll");
        var process = ChildProcess.StartDotnet($"silo {name}", dll,
        [
            "--data", dataDirectory, "--name", name,
            "--silo-port", Text(ports[0]), "--gateway-port", Text(ports[1]),
            "--nbd-port", Text(ports[2]), "--http-port", Text(ports[3]),
        ], environment);
        var silo = new SiloProcess(process, dataDirectory, ports[1], ports[2], ports[3]);
        try
        {
            await process.WaitForOutputAsync("up: gateway", StartTimeout);
        }
        catch
        {
            await silo.DisposeAsync();
            throw;
        }
        return silo;
    }

    private static string Text(int port) => port.ToString(CultureInfo.InvariantCulture);

    public ValueTask DisposeAsync() => Process.DisposeAsync();
}

/// <summary>A temporary directory removed on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("cloud-silo-test-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { /* a process we started may still hold a file for a moment; the OS cleans /tmp */ }
    }
}
