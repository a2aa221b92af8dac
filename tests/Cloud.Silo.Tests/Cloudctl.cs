using System.Diagnostics;
using System.Text.Json;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>The real cloudctl (client/cloudctl's build output) run as a child process against one silo.</summary>
internal static class Cloudctl
{
    /// <summary>How long one cloudctl command may take on a busy machine.</summary>
    public static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(2);

    /// <summary>cloudctl.dll in client/cloudctl's output (the test project's reference builds it).</summary>
    private static string Path() => Repository.BuiltAssembly("client/cloudctl", "cloudctl.dll");

    /// <summary>Runs cloudctl, asserts it succeeded, and parses its JSON output.</summary>
    public static async Task<JsonDocument> JsonAsync(SiloProcess silo, params string[] arguments)
    {
        var result = await RunAsync(silo, arguments);
        Assert.True(
            result.ExitCode == 0,
            $"cloudctl {string.Join(' ', arguments)} exited {result.ExitCode}: {result.Error}\n{result.Output}\nsilo:\n{silo.Process.Output}");
        return JsonDocument.Parse(result.Output);
    }

    /// <summary>Runs cloudctl with <c>--gateway</c> set to the silo's, and returns its exit code and output.</summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(
        SiloProcess silo,
        params string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path());
        info.ArgumentList.Add("--gateway");
        info.ArgumentList.Add(silo.Gateway);
        foreach (var a in arguments) info.ArgumentList.Add(a);
        // This silo's gateway, not a clustering database some environment of the test run may name.
        info.Environment.Remove("CLOUD_CONNECTION");
        info.Environment.Remove("Cloud__Connection");
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(CommandTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException(
                $"cloudctl {string.Join(' ', arguments)} did not finish within {CommandTimeout}");
        }
        return (process.ExitCode, await output, await error);
    }
}
