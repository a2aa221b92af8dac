using System.Diagnostics;
using System.Text;
using Npgsql;

namespace Cloud.Testing;

/// <summary>
/// A real PostgreSQL server for tests: <c>initdb</c> and <c>postgres</c> from the local installation,
/// run as the <c>postgres</c> OS user when the tests run as root (initdb refuses root), in a fresh
/// temporary directory, listening on 127.0.0.1 and a free port. Disposing it stops the server by PID
/// and deletes the directory.
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    /// <summary>
    /// Environment variable that names the directory holding initdb and postgres, to override the search.
    /// </summary>
    public const string BinDirectoryVariable = "CLOUD_POSTGRES_BIN";

    /// <summary>The database superuser the server is initialized with (trust authentication, loopback only).</summary>
    public const string SuperUser = "postgres";

    /// <summary>The OS account that owns the data directory when the tests run as root.</summary>
    public const string OsUser = "postgres";

    /// <summary>Where Debian and Ubuntu install PostgreSQL, one folder per major version.</summary>
    private const string DebianInstallRoot = "/usr/lib/postgresql";

    /// <summary>How long the server may take to accept connections after it starts.</summary>
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>How long initdb may take.</summary>
    private static readonly TimeSpan InitDbTimeout = TimeSpan.FromSeconds(120);

    /// <summary>How long a fast shutdown may take before the server is killed.</summary>
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Attempts at a free port: another process can take the port between our probe and the server's bind.
    /// </summary>
    private const int MaxPortAttempts = 5;

    /// <summary>Server output kept for error messages, so a failing start says why.</summary>
    private const int MaxLogChars = 16_000;

    private static readonly TimeSpan ReadyPollInterval = TimeSpan.FromMilliseconds(100);

    private readonly Process _process;
    private readonly StringBuilder _log;
    private int _disposed;

    private PostgresServer(string rootDirectory, string binDirectory, int port, Process process, StringBuilder log)
    {
        RootDirectory = rootDirectory;
        BinDirectory = binDirectory;
        Port = port;
        _process = process;
        _log = log;
    }

    /// <summary>The temporary directory holding the data directory and the unix socket; deleted on dispose.</summary>
    public string RootDirectory { get; }

    /// <summary>The directory initdb and postgres were run from.</summary>
    public string BinDirectory { get; }

    /// <summary>The TCP port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>The postmaster's PID.</summary>
    public int ProcessId => _process.Id;

    /// <summary>A connection string for <paramref name="database"/> as the superuser.</summary>
    public string ConnectionString(string database = "postgres") => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = Port,
        Username = SuperUser,
        Database = database,
        // Orleans opens and closes connections per query; pooling keeps that cheap.
        Pooling = true,
        Timeout = 15,
    }.ConnectionString;

    /// <summary>What the server has written to stdout and stderr so far (the tail, when long).</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Finds the PostgreSQL binaries, or explains how to install them.</summary>
    /// <exception cref="InvalidOperationException">PostgreSQL is not installed.</exception>
    public static string FindBinDirectory()
    {
        var overridden = Environment.GetEnvironmentVariable(BinDirectoryVariable);
        if (!string.IsNullOrEmpty(overridden))
        {
            if (!File.Exists(Path.Combine(overridden, "initdb")) || !File.Exists(Path.Combine(overridden, "postgres")))
            {
                throw new InvalidOperationException(
                    $"{BinDirectoryVariable}='{overridden}' does not contain initdb and postgres.");
            }

            return overridden;
        }

        if (Directory.Exists(DebianInstallRoot))
        {
            // The newest installed major version wins.
            var candidates = Directory.GetDirectories(DebianInstallRoot)
                .Select(dir => (dir, major: int.TryParse(Path.GetFileName(dir), out var major) ? major : -1))
                .Where(
                    c => c.major > 0 && File.Exists(Path.Combine(c.dir, "bin", "initdb")) && File.Exists(
                        Path.Combine(c.dir, "bin", "postgres")))
                .OrderByDescending(c => c.major)
                .ToList();
            if (candidates.Count > 0)
            {
                return Path.Combine(candidates[0].dir, "bin");
            }
        }

        throw new MissingPrerequisiteException(
            $"PostgreSQL is not installed: no initdb and postgres under {DebianInstallRoot}/*/bin and {BinDirectoryVariable} is not set. " +
            "Run ./test.sh once (it installs the Debian package 'postgresql'), or set " + BinDirectoryVariable + ".");
    }

    /// <summary>Initializes a fresh cluster in a temporary directory and starts a server on a free port.</summary>
    /// <exception cref="InvalidOperationException">PostgreSQL is not installed, or the server did not start (the
    /// message includes its output).</exception>
    public static async Task<PostgresServer> StartAsync(CancellationToken cancellationToken = default)
    {
        var binDirectory = FindBinDirectory();
        var asRoot = Environment.UserName == "root" || GetEffectiveUserId() == 0;

        var root = Directory.CreateTempSubdirectory("cloud-pg-");
        try
        {
            var dataDirectory = Path.Combine(root.FullName, "data");
            if (asRoot)
            {
                await RunToCompletionAsync(
                    "chown",
                    [$"{OsUser}:{OsUser}", root.FullName],
                    root.FullName,
                    TimeSpan.FromSeconds(30),
                    cancellationToken).ConfigureAwait(false);
            }

            await RunToCompletionAsync(
                Path.Combine(binDirectory, "initdb"),
                ["-D", dataDirectory, "-U", SuperUser, "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
                root.FullName, InitDbTimeout, cancellationToken, asRoot).ConfigureAwait(false);

            Exception? lastFailure = null;
            for (var attempt = 1; attempt <= MaxPortAttempts; attempt++)
            {
                var port = FreePorts.Next();
                var log = new StringBuilder();
                var process = StartProcess(
                    Path.Combine(binDirectory, "postgres"),
                    [
                        "-D", dataDirectory,
                        "-h", "127.0.0.1",
                        "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        // The unix socket goes in our directory: /var/run/postgresql may not exist or be shared.
                        "-k", root.FullName,
                        // Test data is thrown away; durability only slows the tests down.
                        "-c", "fsync=off",
                        "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off",
                        "-c", "max_connections=200",
                    ],
                    root.FullName, asRoot, log);
                var server = new PostgresServer(root.FullName, binDirectory, port, process, log);
                try
                {
                    await server.WaitUntilReadyAsync(cancellationToken).ConfigureAwait(false);
                    return server;
                }
                catch (InvalidOperationException e)
                    when (attempt < MaxPortAttempts
                        && server.Log.Contains("could not bind", StringComparison.OrdinalIgnoreCase))
                {
                    lastFailure = e;
                    await server.StopServerAsync().ConfigureAwait(false);
                }
                catch
                {
                    await server.StopServerAsync().ConfigureAwait(false);
                    throw;
                }
            }

            throw new InvalidOperationException(
                $"PostgreSQL could not bind a free port in {MaxPortAttempts} attempts.", lastFailure);
        }
        catch
        {
            TryDeleteDirectory(root.FullName);
            throw;
        }
    }

    /// <summary>Creates an empty database and returns its connection string.</summary>
    /// <param name="name">Letters, digits and underscores, starting with a letter; at most 63 characters.</param>
    public async Task<string> CreateDatabaseAsync(string name, CancellationToken cancellationToken = default)
    {
        const int MaxIdentifierLength = 63;
        if (string.IsNullOrEmpty(name)
            || name.Length > MaxIdentifierLength
            || !char.IsAsciiLetter(name[0])
            || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
        {
            throw new ArgumentException(
                $"Database name '{name}' is not allowed: use 1 to {MaxIdentifierLength} ASCII letters, digits or underscores, starting with a letter.",
                nameof(name));
        }

        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        return ConnectionString(name);
    }

    /// <summary>Stops the server (fast shutdown, then SIGKILL) and deletes its directory.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Idle pooled connections would otherwise hold the server's backends until they time out.
        NpgsqlConnection.ClearAllPools();
        await StopServerAsync().ConfigureAwait(false);
        TryDeleteDirectory(RootDirectory);
    }

    private async Task StopServerAsync()
    {
        int pid;
        try
        {
            if (_process.HasExited)
            {
                return;
            }

            pid = _process.Id;
        }
        catch (InvalidOperationException)
        {
            return;
        }

        UnixProcess.Signal(pid, UnixProcess.SigInt);
        if (!await UnixProcess.WaitForExitAsync(pid, StopTimeout).ConfigureAwait(false))
        {
            UnixProcess.Signal(pid, UnixProcess.SigKill);
            await UnixProcess.WaitForExitAsync(pid, StopTimeout).ConfigureAwait(false);
        }

        await _process.WaitForExitAsync().ConfigureAwait(false);
        _process.Dispose();
    }

    private async Task WaitUntilReadyAsync(CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        await using var dataSource = NpgsqlDataSource.Create(
            new NpgsqlConnectionStringBuilder(ConnectionString()) { Pooling = false, Timeout = 2 });
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_process.HasExited)
            {
                throw new InvalidOperationException(
                    $"PostgreSQL exited with code {_process.ExitCode} before accepting connections on 127.0.0.1:{Port}. Its output:\n{Log}");
            }

            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(cancellationToken)
                    .ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                if (DateTime.UtcNow >= deadline)
                {
                    throw new InvalidOperationException(
                        $"PostgreSQL did not accept connections on 127.0.0.1:{Port} within {StartTimeout}. Its output:\n{Log}",
                        e);
                }
            }

            await Task.Delay(ReadyPollInterval, cancellationToken).ConfigureAwait(false);
        }
    }

    private static Process StartProcess(
        string fileName,
        IReadOnlyList<string> arguments,
        string workingDirectory,
        bool asPostgresUser,
        StringBuilder log)
    {
        var startInfo = new ProcessStartInfo
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };

        if (asPostgresUser)
        {
            // setpriv changes user and execs, so the PID we hold is the postmaster itself, not a
            // wrapper that might outlive it or be killed without it.
            startInfo.FileName = "setpriv";
            foreach (var a in (string[])["--reuid", OsUser, "--regid", OsUser, "--init-groups", "--", fileName])
            {
                startInfo.ArgumentList.Add(a);
            }
        }
        else
        {
            startInfo.FileName = fileName;
        }

        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = startInfo };
        DataReceivedEventHandler append = (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (log)
            {
                log.AppendLine(e.Data);
                if (log.Length > MaxLogChars)
                {
                    log.Remove(0, log.Length - MaxLogChars);
                }
            }
        };
        process.OutputDataReceived += append;
        process.ErrorDataReceived += append;
        if (!process.Start())
        {
            throw new InvalidOperationException($"Could not start {startInfo.FileName}.");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task RunToCompletionAsync(
        string fileName,
        IReadOnlyList<string> arguments,
        string workingDirectory,
        TimeSpan timeout,
        CancellationToken cancellationToken,
        bool asPostgresUser = false)
    {
        var log = new StringBuilder();
        using var process = StartProcess(fileName, arguments, workingDirectory, asPostgresUser, log);
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException(
                $"{Path.GetFileName(fileName)} did not finish within {timeout}. Its output:\n{log}");
        }

        // WaitForExitAsync returns after the output streams are drained, so the log is complete here.
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{Path.GetFileName(fileName)} {string.Join(' ', arguments)} failed with exit code {process.ExitCode}. Its output:\n{log}");
        }
    }

    private static void TryDeleteDirectory(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                Directory.Delete(path, recursive: true);
            }
        }
        catch (IOException)
        {
            // Best effort: a leftover temp directory must not fail the test that used the server.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEffectiveUserId();
}
