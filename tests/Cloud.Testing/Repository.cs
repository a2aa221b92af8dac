namespace Cloud.Testing;

/// <summary>
/// Finds the repository the tests run from, and what its other projects built there: the silo, cloudctl and the
/// node_modules tools (Azurite) that tests start as separate processes.
/// </summary>
public static class Repository
{
    private static readonly Lazy<string> FoundRoot = new(FindRoot);

    /// <summary>The directory holding Cloud.sln and package.json, found upwards from the running binaries.</summary>
    /// <exception cref="InvalidOperationException">No directory above the binaries holds both.</exception>
    public static string Root => FoundRoot.Value;

    /// <summary>
    /// The path of <paramref name="assemblyName"/> in the output of the project in <paramref name="projectDirectory"/>
    /// (relative to the root, e.g. <c>silo</c>): the configuration these binaries were built in first (bin/Debug or
    /// bin/Release), else the other one.
    /// </summary>
    /// <exception cref="FileNotFoundException">Neither configuration has built it; the message says what to
    /// build.</exception>
    public static string BuiltAssembly(string projectDirectory, string assemblyName)
    {
        var here = AppContext.BaseDirectory;
        var framework = new DirectoryInfo(here).Name;
        var separator = Path.DirectorySeparatorChar.ToString();
        var configuration = here.Contains($"{separator}Release{separator}", StringComparison.Ordinal)
            ? "Release"
            : "Debug";
        var other = configuration == "Debug" ? "Release" : "Debug";
        var output = Path.Combine(Root, projectDirectory, "bin");
        foreach (var candidate in new[] { configuration, other })
        {
            var path = Path.Combine(output, candidate, framework, assemblyName);
            if (File.Exists(path))
            {
                return path;
            }
        }

        throw new FileNotFoundException(
            $"{assemblyName} is not built under {output}; build {projectDirectory} (the test project's reference does).",
            assemblyName);
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Cloud.sln"))
                && File.Exists(Path.Combine(dir.FullName, "package.json")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException(
            $"No directory above {AppContext.BaseDirectory} holds Cloud.sln and package.json.");
    }
}
