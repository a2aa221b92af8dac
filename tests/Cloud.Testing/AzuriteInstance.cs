using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Cloud.Testing;

/// <summary>
/// One Azurite blob service from the repository's node_modules, on 127.0.0.1 and a port the OS
/// picks (port 0, read back from Azurite's banner), with its data in a temp dir. Killed by PID and
/// its dir deleted on dispose. The page-blob tests, the silo tests and the page-blob benchmark all
/// start Azurite through this one class.
/// </summary>
public sealed partial class AzuriteInstance : IAsyncDisposable
{
    /// <summary>How long Azurite may take to print its listening banner before the start counts as failed.</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The account every Azurite has (Microsoft's published development-storage account; its key is not a secret).
    /// </summary>
    public const string AccountName = "devstoreaccount1";

    private const string AccountKey =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private readonly Process _process;
    private readonly StringBuilder _output;

    private AzuriteInstance(Process process, StringBuilder output, string location, int port)
    {
        _process = process;
        _output = output;
        Location = location;
        Port = port;
    }

    /// <summary>The temp dir that holds the blobs.</summary>
    public string Location { get; }

    /// <summary>The TCP port the blob service listens on.</summary>
    public int Port { get; }

    /// <summary>The process id, for the record.</summary>
    public int ProcessId => _process.Id;

    /// <summary>A connection string for this instance, optionally through another port (a fault proxy).</summary>
    public string ConnectionString(int? viaPort = null) =>
        $"DefaultEndpointsProtocol=http;AccountName={AccountName};AccountKey={AccountKey};"
        + $"BlobEndpoint=http://127.0.0.1:{viaPort ?? Port}/{AccountName};";

    /// <summary>Starts Azurite; throws with a clear message when node_modules is missing.</summary>
    public static async Task<AzuriteInstance> StartAsync(string? location = null)
    {
        var executable = Path.Combine(Repository.Root, "node_modules", ".bin", "azurite-blob");
        if (!File.Exists(executable))
        {
            throw new MissingPrerequisiteException(
                $"Azurite is not installed: {executable} is missing. Run ./test.sh at the repository root "
                + "(it runs `npm ci` from package-lock.json), or `npm ci` there.");
        }

        location ??= Directory.CreateTempSubdirectory("cloud-azurite-").FullName;
        var info = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = location,
        };

        // No --skipApiVersionCheck: the devices pin a service version Azurite 3.37 accepts, and the tests prove it.
        // --silent: no access log, so the captured output (kept for start errors) stays small.
        // On disk in a temp dir rather than --inMemoryPersistence, which the page-blob benchmark measured slower and
        // noisier (1 MiB writes took about 100 ms).
        string[] arguments =
            ["--blobHost", "127.0.0.1", "--blobPort", "0", "--location", location, "--silent", "--disableTelemetry"];
        foreach (var arg in arguments)
        {
            info.ArgumentList.Add(arg);
        }

        var output = new StringBuilder();
        var listening = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Exited += (_, _) =>
            listening.TrySetException(new InvalidOperationException($"Azurite exited during start:\n{Snapshot()}"));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var port = await listening.Task.WaitAsync(StartTimeout);
            return new AzuriteInstance(process, output, location, port);
        }
        catch
        {
            Kill(process);
            throw;
        }

        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (output)
            {
                output.AppendLine(line);
            }

            Match m = ListeningBanner().Match(line);
            if (m.Success)
            {
                listening.TrySetResult(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        string Snapshot()
        {
            lock (output)
            {
                return output.ToString();
            }
        }
    }

    /// <summary>Kills the process (the "service went away" fault) and keeps its data dir.</summary>
    public void Stop() => Kill(_process);

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Kill(_process);
        _process.Dispose();
        try
        {
            Directory.Delete(Location, recursive: true);
        }
        catch (IOException)
        {
            // A file still held open by the dying process; the OS temp cleaner gets it.
        }

        return ValueTask.CompletedTask;
    }

    private static void Kill(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
            }
        }
        catch (InvalidOperationException)
        {
            // Never started or already reaped.
        }
    }

    [GeneratedRegex(@"successfully listens on https?://[^:]+:(\d+)")]
    private static partial Regex ListeningBanner();
}
