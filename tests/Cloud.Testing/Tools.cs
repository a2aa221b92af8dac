using System.Diagnostics;
using System.Text;
using Xunit;

namespace Cloud.Testing;

/// <summary>
/// Finds and runs the real programs the tests drive as independent oracles (qemu, libnbd, fio, mkfs, ss), failing
/// the test with the Debian package to install when one is missing.
/// </summary>
public static class Tools
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(3);

    /// <summary>
    /// The full path of <paramref name="name"/>, or a failed test naming the package that provides it.
    /// </summary>
    public static string Require(string name, string package)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':').Concat(["/usr/sbin", "/sbin", "/usr/bin"]))
        {
            var path = Path.Combine(dir, name);
            if (File.Exists(path))
            {
                return path;
            }
        }
        Assert.Fail($"'{name}' is not installed; install the Debian package '{package}' (test.sh does).");
        return "";
    }

    public sealed record Result(int ExitCode, string Output)
    {
        public Result AssertSuccess(string what)
        {
            Assert.True(ExitCode == 0, $"{what} exited with {ExitCode}:\n{Output}");
            return this;
        }
    }

    public static async Task<Result> RunAsync(
        string file,
        IEnumerable<string> args,
        TimeSpan? timeout = null,
        string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        var output = new StringBuilder();
        var stdout = PumpAsync(process.StandardOutput, output);
        var stderr = PumpAsync(process.StandardError, output);
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            await Task.WhenAll(stdout, stderr);
            Assert.Fail(
                $"{Path.GetFileName(file)} {string.Join(' ', args)} did not finish within {timeout ?? DefaultTimeout}:\n{output}");
        }
        await Task.WhenAll(stdout, stderr);
        lock (output)
        {
            return new Result(process.ExitCode, output.ToString());
        }
    }

    private static async Task PumpAsync(StreamReader reader, StringBuilder sink)
    {
        string? line;
        while ((line = await reader.ReadLineAsync()) is not null)
        {
            lock (sink)
            {
                sink.AppendLine(line);
            }
        }
    }
}
