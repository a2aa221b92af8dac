using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Cloud.Bench.Azure;

/// <summary>Azurite from the repository's node_modules on 127.0.0.1 and a port the OS picks, data in a temp dir.</summary>
public sealed partial class BenchAzurite : IAsyncDisposable
{
    /// <summary>How long Azurite may take to start.</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly string _location;

    private BenchAzurite(Process process, string location, int port)
    {
        _process = process;
        _location = location;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The development-storage connection string for Azurite on <paramref name="port"/>.</summary>
    public static string ConnectionString(int port) =>
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        + "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        + $"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;";

    public static async Task<BenchAzurite> StartAsync()
    {
        string executable = Path.Combine(RepositoryRoot(), "node_modules", ".bin", "azurite-blob");
        if (!File.Exists(executable))
        {
            throw new InvalidOperationException($"{executable} is missing: run `npm ci` (or ./test.sh) at the repository root.");
        }

        string location = Directory.CreateTempSubdirectory("cloud-bench-azurite-").FullName;
        var info = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // On disk in a temp dir: --inMemoryPersistence measured slower and noisier here (1 MiB writes ~100 ms).
        foreach (string arg in new[] { "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", location, "--silent", "--disableTelemetry" })
        {
            info.ArgumentList.Add(arg);
        }

        var port = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) =>
        {
            Match m = e.Data is null ? Match.Empty : Banner().Match(e.Data);
            if (m.Success)
            {
                port.TrySetResult(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            }
        };
        process.ErrorDataReceived += (_, _) => { };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            return new BenchAzurite(process, location, await port.Task.WaitAsync(StartTimeout));
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
    }

    public ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
        Directory.Delete(_location, recursive: true);
        return ValueTask.CompletedTask;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "package.json")) && File.Exists(Path.Combine(dir.FullName, "Cloud.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No directory above {AppContext.BaseDirectory} holds Cloud.sln and package.json.");
    }

    [GeneratedRegex(@"successfully listens on https?://[^:]+:(\d+)")]
    private static partial Regex Banner();
}
