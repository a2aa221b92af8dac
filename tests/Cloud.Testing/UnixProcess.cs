using System.Runtime.InteropServices;

namespace Cloud.Testing;

/// <summary>Signals and waits for processes by PID, for processes that are not our direct children.</summary>
public static partial class UnixProcess
{
    /// <summary>SIGINT: PostgreSQL's "fast shutdown".</summary>
    public const int SigInt = 2;

    /// <summary>SIGKILL: no cleanup, the way a crash looks to the rest of the cluster.</summary>
    public const int SigKill = 9;

    /// <summary>SIGTERM.</summary>
    public const int SigTerm = 15;

    /// <summary>How often <see cref="WaitForExitAsync"/> looks at /proc.</summary>
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signal);

    /// <summary>
    /// Sends <paramref name="signal"/> to <paramref name="pid"/>; returns false if there is no such process.
    /// </summary>
    public static bool Signal(int pid, int signal)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pid);
        return SysKill(pid, signal) == 0;
    }

    /// <summary>True while <paramref name="pid"/> exists and is not a zombie.</summary>
    public static bool IsRunning(int pid)
    {
        var statPath = $"/proc/{pid}/stat";
        try
        {
            var stat = File.ReadAllText(statPath);
            // The state letter follows the parenthesised command name: "pid (comm) S ...".
            var close = stat.LastIndexOf(')');
            return close < 0 || close + 2 >= stat.Length || stat[close + 2] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return true;
        }
    }

    /// <summary>
    /// Waits until <paramref name="pid"/> is gone; returns false if it is still running after
    /// <paramref name="timeout"/>.
    /// </summary>
    public static async Task<bool> WaitForExitAsync(int pid, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (IsRunning(pid))
        {
            if (DateTime.UtcNow >= deadline)
            {
                return false;
            }

            await Task.Delay(PollInterval).ConfigureAwait(false);
        }

        return true;
    }
}
