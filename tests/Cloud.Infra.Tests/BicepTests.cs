using System.Diagnostics;
using System.Reflection;

namespace Cloud.Infra.Tests;

/// <summary>
/// Builds and lints every Bicep file under infra/ with the Bicep CLI from the NuGet package
/// Azure.Bicep.CommandLine.linux-x64, with infra/bicepconfig.json (every linter rule an error). Any
/// diagnostic at all, warning or error, fails the test.
/// </summary>
public sealed class BicepTests
{
    /// <summary>How long one CLI run may take (the CLI is a large single-file app; the first start is slow).</summary>
    private static readonly TimeSpan CliTimeout = TimeSpan.FromMinutes(3);

    public static TheoryData<string> BicepFiles()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.EnumerateFiles(InfraDirectory, "*.bicep", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetRelativePath(InfraDirectory, file));
        }

        return data;
    }

    public static TheoryData<string> ParameterFiles()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.EnumerateFiles(InfraDirectory, "*.bicepparam", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetRelativePath(InfraDirectory, file));
        }

        return data;
    }

    [Fact]
    public void Infra_HasMainTemplate_ParametersFile_AndStrictConfig()
    {
        Assert.True(File.Exists(Path.Combine(InfraDirectory, "main.bicep")));
        Assert.True(File.Exists(Path.Combine(InfraDirectory, "main.bicepparam")));
        var config = File.ReadAllText(Path.Combine(InfraDirectory, "bicepconfig.json"));
        Assert.DoesNotContain("\"warning\"", config, StringComparison.Ordinal);
        Assert.Contains("\"error\"", config, StringComparison.Ordinal);
    }

    [Fact]
    public void Modules_AreLocalFilesOnly()
    {
        foreach (var file in Directory.EnumerateFiles(InfraDirectory, "*.bicep", SearchOption.AllDirectories))
        {
            foreach (var line in File.ReadLines(file))
            {
                var trimmed = line.TrimStart();
                if (trimmed.StartsWith("module ", StringComparison.Ordinal))
                {
                    Assert.Matches(@"^module \w+ 'modules/[\w-]+\.bicep'", trimmed);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(BicepFiles))]
    public async Task Build_ProducesArmTemplate_WithNoDiagnostics(string relativePath)
    {
        var (exitCode, stdout, stderr) = await RunBicepAsync("build", relativePath, "--stdout");

        Assert.True(
            exitCode == 0 && stderr.Trim().Length == 0, $"bicep build {relativePath} exited {exitCode}:\n{stderr}");
        Assert.Contains("\"$schema\"", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(BicepFiles))]
    public async Task Lint_ReportsNoDiagnostics(string relativePath)
    {
        var (exitCode, stdout, stderr) = await RunBicepAsync("lint", relativePath);

        Assert.True(
            exitCode == 0 && (stdout + stderr).Trim().Length == 0,
            $"bicep lint {relativePath} exited {exitCode}:\n{stdout}{stderr}");
    }

    [Theory]
    [MemberData(nameof(ParameterFiles))]
    public async Task ParametersFile_BuildsAndLints_WithNoDiagnostics(string relativePath)
    {
        var build = await RunBicepAsync("build-params", relativePath, "--stdout");
        Assert.True(
            build.ExitCode == 0 && build.Stderr.Trim().Length == 0,
            $"bicep build-params {relativePath} exited {build.ExitCode}:\n{build.Stderr}");
        Assert.Contains("parametersJson", build.Stdout, StringComparison.Ordinal);
        Assert.Contains("namePrefix", build.Stdout, StringComparison.Ordinal);

        var lint = await RunBicepAsync("lint", relativePath);
        Assert.True(
            lint.ExitCode == 0 && (lint.Stdout + lint.Stderr).Trim().Length == 0,
            $"bicep lint {relativePath} exited {lint.ExitCode}:\n{lint.Stdout}{lint.Stderr}");
    }

    [Fact]
    public async Task Lint_FailsOnAWarningLevelProblem_SoTheChecksCanFail()
    {
        // An unused parameter is only a warning by default; our config must make the CLI fail on it.
        var scratch = Path.Combine(InfraDirectory, $"lint-probe-{Guid.NewGuid():N}.bicep");
        await File.WriteAllTextAsync(scratch, "@description('unused')\nparam unused string\n");
        try
        {
            var (exitCode, stdout, stderr) = await RunBicepAsync("lint", Path.GetFileName(scratch));
            Assert.NotEqual(0, exitCode);
            Assert.Contains("no-unused-params", stdout + stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(scratch);
        }
    }

    private static string InfraDirectory => Metadata("InfraDirectory");

    private static string BicepExecutable
    {
        get
        {
            var root = Metadata("BicepPackageRoot");
            var path = Path.Combine(root, "tools", "bicep");
            if (!File.Exists(path))
            {
                throw new InvalidOperationException(
                    $"The Bicep CLI is not at '{path}'. Restore the test project (dotnet restore tests/Cloud.Infra.Tests) so NuGet fetches Azure.Bicep.CommandLine.linux-x64.");
            }

            return path;
        }
    }

    private static string Metadata(string key) =>
        typeof(BicepTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .SingleOrDefault(a => a.Key == key)?.Value
        ?? throw new InvalidOperationException(
            $"Assembly metadata '{key}' is missing; it is set in Cloud.Infra.Tests.csproj.");

    internal static async Task<(int ExitCode, string Stdout, string Stderr)> RunBicepAsync(params string[] arguments)
    {
        var startInfo = new ProcessStartInfo(BicepExecutable)
        {
            WorkingDirectory = InfraDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        // The CLI would otherwise look for a newer version and telemetry endpoints on the network.
        startInfo.Environment["BICEP_TRACING_ENABLED"] = "false";
        startInfo.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";

        using var process = Process.Start(startInfo)
            ?? throw new InvalidOperationException($"Could not start {BicepExecutable}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(CliTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"bicep {string.Join(' ', arguments)} did not finish within {CliTimeout}.");
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
