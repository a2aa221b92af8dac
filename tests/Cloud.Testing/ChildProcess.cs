using System.Diagnostics;
using System.Text;

namespace Cloud.Testing;

/// <summary>
/// A child process for crash tests: output captured for failure messages, a wait for a line that
/// says it is ready, a hard kill (SIGKILL, no cleanup), and cleanup of whatever is left on dispose.
/// </summary>
public sealed class ChildProcess : IAsyncDisposable
{
    /// <summary>Output kept for failure messages.</summary>
    private const int MaxOutputChars = 256_000;

    /// <summary>How long a process may take to exit after SIGTERM on dispose before it is killed.</summary>
    private static readonly TimeSpan GracefulStopTimeout = TimeSpan.FromSeconds(10);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly List<(string Text, TaskCompletionSource Seen)> _waiters = [];

    private ChildProcess(Process process, string name)
    {
        _process = process;
        Name = name;
    }

    /// <summary>A short name for messages.</summary>
    public string Name { get; }

    /// <summary>The process id.</summary>
    public int Id => _process.Id;

    /// <summary>True once the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Everything the process wrote to stdout and stderr (the tail, when long).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts <c>dotnet <paramref name="assemblyPath"/> args...</c>.</summary>
    public static ChildProcess StartDotnet(string name, string assemblyPath, IEnumerable<string> arguments) =>
        StartDotnet(name, assemblyPath, arguments, environment: null);

    /// <summary>
    /// Starts <c>dotnet <paramref name="assemblyPath"/> args...</c> with extra environment variables.
    /// </summary>
    public static ChildProcess StartDotnet(
        string name,
        string assemblyPath,
        IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment)
    {
        if (!File.Exists(assemblyPath))
        {
            throw new FileNotFoundException(
                $"Cannot start {name}: '{assemblyPath}' does not exist. Build the test project first.", assemblyPath);
        }

        return Start(name, "dotnet", [assemblyPath, .. arguments], environment);
    }

    /// <summary>Starts <paramref name="fileName"/> with <paramref name="arguments"/>.</summary>
    public static ChildProcess Start(string name, string fileName, IEnumerable<string> arguments)
        => Start(name, fileName, arguments, environment: null);

    /// <summary>
    /// Starts <paramref name="fileName"/> with <paramref name="arguments"/> and extra environment variables.
    /// </summary>
    public static ChildProcess Start(
        string name,
        string fileName,
        IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            startInfo.Environment[key] = value;
        }

        var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        var child = new ChildProcess(process, name);
        process.OutputDataReceived += (_, e) => child.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => child.OnLine(e.Data);
        process.Exited += (_, _) => child.OnExited();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Waits until the process writes a line containing <paramref name="text"/>.</summary>
    /// <exception cref="InvalidOperationException">The process exited first, or <paramref name="timeout"/> passed; the
    /// message includes its output.</exception>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_output)
        {
            if (_output.ToString().Contains(text, StringComparison.Ordinal))
            {
                return;
            }

            _waiters.Add((text, seen));
        }

        if (_process.HasExited)
        {
            OnExited();
        }

        try
        {
            await seen.Task.WaitAsync(timeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new InvalidOperationException(
                $"{Name} did not write '{text}' within {timeout}. Its output:\n{Output}");
        }
    }

    /// <summary>
    /// Kills the process with SIGKILL, the way a crash looks to its peers, and waits until it is gone.
    /// </summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for the process to exit on its own and for its output to be read to the
    /// end (<see cref="HasExited"/> turns true before the last lines arrive); returns the exit code.
    /// </summary>
    /// <exception cref="TimeoutException">The process is still running after <paramref name="timeout"/>.</exception>
    public Task<int> ExitAsync(TimeSpan timeout) => WaitForExitAsync(timeout, "");

    /// <summary>Waits for the exit and the end of the output; the timeout's message names what it waited from.</summary>
    private async Task<int> WaitForExitAsync(TimeSpan timeout, string since)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancel.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Name} did not exit within {timeout}{since}. Its output:\n{Output}");
        }

        return _process.ExitCode;
    }

    /// <summary>The exit code; valid once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>
    /// Sends SIGTERM (a graceful stop) and waits up to <paramref name="timeout"/> for the exit; returns the exit code.
    /// </summary>
    /// <exception cref="TimeoutException">The process is still running after <paramref name="timeout"/>.</exception>
    public async Task<int> TerminateAsync(TimeSpan timeout)
    {
        if (!_process.HasExited)
        {
            UnixProcess.Signal(_process.Id, UnixProcess.SigTerm);
        }

        return await WaitForExitAsync(timeout, " of SIGTERM").ConfigureAwait(false);
    }

    /// <summary>Stops the process (SIGTERM, then SIGKILL) if it is still running.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                UnixProcess.Signal(_process.Id, UnixProcess.SigTerm);
                using var timeout = new CancellationTokenSource(GracefulStopTimeout);
                try
                {
                    await _process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    _process.Kill(entireProcessTree: true);
                    await _process.WaitForExitAsync().ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _process.Dispose();
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
            if (_output.Length > MaxOutputChars)
            {
                _output.Remove(0, _output.Length - MaxOutputChars);
            }

            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (line.Contains(_waiters[i].Text, StringComparison.Ordinal))
                {
                    _waiters[i].Seen.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    private void OnExited()
    {
        lock (_output)
        {
            foreach (var (text, seen) in _waiters)
            {
                seen.TrySetException(
                    new InvalidOperationException($"{Name} exited before writing '{text}'. Its output:\n{_output}"));
            }

            _waiters.Clear();
        }
    }
}
