using System.Diagnostics;
using System.Globalization;

namespace Cloud.HostBed;

/// <summary>
/// The Unix accounts of the bed's hosts. Each host's silo runs as its own system user, so a silo that reached for
/// another host's data directory would be refused by the kernel, as it would be on separate machines.
/// </summary>
public static class UnixUsers
{
    /// <summary>True when this process runs as root (CI does), the only case in which users can be created.</summary>
    public static bool IsRoot => Environment.UserName == "root" || RunOrNull("id", "-u") == "0";

    /// <summary>
    /// Creates the system user <paramref name="name"/> if missing (no home, no login shell); returns its uid and gid.
    /// </summary>
    /// <exception cref="InvalidOperationException">useradd failed; the message carries its output.</exception>
    public static (int Uid, int Gid) Ensure(string name)
    {
        if (Lookup(name) is { } found) return found;
        var (code, output) = Run(
            "useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name);
        // Another bed may have created it between the lookup and useradd (exit 9: the name is taken).
        if (code != 0 && code != 9)
            throw new InvalidOperationException($"useradd {name} failed (exit {code}): {output.Trim()}");
        return Lookup(name) ?? throw new InvalidOperationException($"user {name} does not exist after useradd");
    }

    /// <summary>The uid and gid of <paramref name="name"/>, or null when there is no such user.</summary>
    public static (int Uid, int Gid)? Lookup(string name)
    {
        var uid = RunOrNull("id", "-u", name);
        var gid = RunOrNull("id", "-g", name);
        return uid is null || gid is null
            ? null
            : (int.Parse(uid, CultureInfo.InvariantCulture), int.Parse(gid, CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Runs <paramref name="file"/> as <paramref name="uid"/>:<paramref name="gid"/> (through setpriv); returns its
    /// exit code.
    /// </summary>
    public static int RunAs(int uid, int gid, string file, params string[] arguments) =>
        Run("setpriv", [$"--reuid={uid}", $"--regid={gid}", "--clear-groups", "--", file, .. arguments]).Code;

    private static string? RunOrNull(string file, params string[] arguments)
    {
        var (code, output) = Run(file, arguments);
        return code == 0 ? output.Trim() : null;
    }

    private static (int Code, string Output) Run(string file, params string[] arguments)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false
        };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
