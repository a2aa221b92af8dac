using System.Diagnostics;

namespace Cloud.AppHost;

/// <summary>
/// Prepares a PostgreSQL data directory from the locally installed binaries, for running PostgreSQL
/// as an Aspire executable resource where there is no container runtime.
/// </summary>
internal static class LocalPostgres
{
    /// <summary>Where Debian and Ubuntu install PostgreSQL, one folder per major version.</summary>
    private const string DebianInstallRoot = "/usr/lib/postgresql";

    /// <summary>The OS account that runs PostgreSQL when the AppHost runs as root (initdb refuses root).</summary>
    public const string OsUser = "postgres";

    /// <summary>The database superuser; trust authentication on 127.0.0.1 only.</summary>
    public const string SuperUser = "postgres";

    private static readonly TimeSpan InitDbTimeout = TimeSpan.FromMinutes(2);

    /// <summary>True when this process runs as root.</summary>
    public static bool RunningAsRoot => Environment.UserName == "root";

    /// <summary>Finds the directory with initdb and postgres, newest major version first.</summary>
    /// <exception cref="InvalidOperationException">PostgreSQL is not installed.</exception>
    public static string FindBinDirectory(string? configured)
    {
        if (!string.IsNullOrEmpty(configured))
        {
            if (!File.Exists(Path.Combine(configured, "postgres")))
            {
                throw new InvalidOperationException(
                    $"Cloud:PostgresBin='{configured}' does not contain the postgres binary.");
            }

            return configured;
        }

        if (Directory.Exists(DebianInstallRoot))
        {
            var newest = Directory.GetDirectories(DebianInstallRoot)
                .Where(d => int.TryParse(Path.GetFileName(d), out _) && File.Exists(Path.Combine(d, "bin", "postgres")))
                .OrderByDescending(
                    d => int.Parse(Path.GetFileName(d), System.Globalization.CultureInfo.InvariantCulture))
                .FirstOrDefault();
            if (newest is not null)
            {
                return Path.Combine(newest, "bin");
            }
        }

        throw new InvalidOperationException(
            $"No container runtime and no local PostgreSQL: install the Debian package 'postgresql' (./test.sh does), set Cloud:PostgresBin, or install Docker or Podman and set Cloud:PostgresMode=container.");
    }

    /// <summary>Runs initdb into <paramref name="dataDirectory"/> unless it already holds a cluster.</summary>
    public static void EnsureInitialized(string binDirectory, string dataDirectory)
    {
        if (File.Exists(Path.Combine(dataDirectory, "PG_VERSION")))
        {
            return;
        }

        var parent = Path.GetDirectoryName(dataDirectory)!;
        Directory.CreateDirectory(parent);
        if (RunningAsRoot && !OperatingSystem.IsWindows())
        {
            Run("chown", [$"{OsUser}:{OsUser}", parent], parent);
            // The postgres user must be able to reach its directory: private temp directories
            // (mode 700, owned by root) on the way get search permission, and nothing more.
            for (var dir = Path.GetDirectoryName(parent); !string.IsNullOrEmpty(dir)
                && dir != "/"; dir = Path.GetDirectoryName(dir))
            {
                var mode = File.GetUnixFileMode(dir);
                if ((mode & UnixFileMode.OtherExecute) == 0)
                {
                    File.SetUnixFileMode(dir, mode | UnixFileMode.OtherExecute);
                }
            }
        }

        Run(Path.Combine(binDirectory, "initdb"),
            ["-D", dataDirectory, "-U", SuperUser, "--auth=trust", "--encoding=UTF8", "--no-locale"],
            parent, asPostgres: RunningAsRoot);
    }

    /// <summary>
    /// The command and arguments that run <paramref name="executable"/> as the postgres user when we are root.
    /// </summary>
    public static (string Command, string[] Prefix) AsPostgresUser(string executable) =>
        RunningAsRoot
            // setpriv execs in place, so the process Aspire tracks and stops is PostgreSQL itself.
            ? ("setpriv", ["--reuid", OsUser, "--regid", OsUser, "--init-groups", "--", executable])
            : (executable, []);

    private static void Run(string fileName, string[] arguments, string workingDirectory, bool asPostgres = false)
    {
        var (command, prefix) = asPostgres ? AsPostgresUser(fileName) : (fileName, Array.Empty<string>());
        var startInfo = new ProcessStartInfo(command)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in prefix.Concat(arguments))
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo)
            ?? throw new InvalidOperationException($"Could not start {command}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(InitDbTimeout))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{Path.GetFileName(fileName)} did not finish within {InitDbTimeout}.");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{Path.GetFileName(fileName)} {string.Join(' ', arguments)} failed with exit code {process.ExitCode}:\n{stdout.Result}{stderr.Result}");
        }
    }
}
