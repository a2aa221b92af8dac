using Microsoft.Extensions.Configuration;

namespace Cloud.Silo;

/// <summary>
/// Maps the environment that Aspire and Orleans' configuration-based setup use onto the silo's own <c>Silo</c>
/// section, so one silo binary runs by hand (<c>--clustering postgres --connection ...</c>) and under the AppHost
/// (<c>Cloud__Clustering</c>, <c>Orleans__Clustering__ProviderType=AdoNet</c>,
/// <c>ConnectionStrings__cloud-postgres</c>,
/// <c>Orleans__Endpoints__SiloPort</c>, ...). A key already set in the <c>Silo</c> section (command line, environment
/// <c>Silo__...</c>, appsettings) always wins; the fallbacks only fill what is missing.
/// </summary>
public static class SiloConfiguration
{
    /// <summary>The ADO.NET grain storage name the silo registers on PostgreSQL.</summary>
    public const string GrainStorageName = "cloud";

    /// <summary>
    /// Added to the drain timeout to give the rest of the shutdown (deactivations, leaving the cluster) time.
    /// </summary>
    public static readonly TimeSpan ShutdownMargin = TimeSpan.FromSeconds(15);

    /// <summary>Each Silo key and the keys consulted, in order, when it is unset.</summary>
    private static readonly (string Key, string[] Fallbacks)[] Aliases =
    [
        ("Silo:Clustering", ["Cloud:Clustering"]),
        ("Silo:Connection", ["Cloud:Connection"]),
        ("Silo:ApplySchema", ["Cloud:ApplySchema"]),
        ("Silo:SiloPort", ["Orleans:Endpoints:SiloPort"]),
        ("Silo:GatewayPort", ["Orleans:Endpoints:GatewayPort"]),
        ("Silo:ClusterId", ["Orleans:ClusterId"]),
        ("Silo:ServiceId", ["Orleans:ServiceId"]),
        ("Silo:Name", ["Cloud:SiloName"]),
    ];

    /// <summary>The keys this class consults when a <c>Silo</c> key is unset.</summary>
    public static IEnumerable<string> FallbackKeys => Aliases.SelectMany(a => a.Fallbacks);

    /// <summary>
    /// Adds the fallback values to <paramref name="configuration"/>. Returns an error line when a value is not allowed
    /// (the clustering kind), or null.
    /// </summary>
    public static string? AddFallbacks(IConfigurationManager configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var added = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, fallbacks) in Aliases)
        {
            if (!string.IsNullOrEmpty(configuration[key])) continue;
            var value = fallbacks.Select(f => configuration[f]).FirstOrDefault(v => !string.IsNullOrEmpty(v));
            if (value is not null) added[key] = value;
        }

        // Orleans' own configuration-based clustering (what Aspire's Orleans integration writes): AdoNet means ours.
        var provider = configuration["Orleans:Clustering:ProviderType"];
        if (string.IsNullOrEmpty(configuration["Silo:Clustering"]) && !added.ContainsKey("Silo:Clustering")
            && string.Equals(provider, "AdoNet", StringComparison.OrdinalIgnoreCase))
        {
            added["Silo:Clustering"] = "postgres";
        }

        if (string.IsNullOrEmpty(configuration["Silo:Connection"]) && !added.ContainsKey("Silo:Connection")
            && configuration["Orleans:Clustering:ConnectionName"] is { Length: > 0 } connectionName
            && configuration.GetConnectionString(connectionName) is { Length: > 0 } named)
        {
            added["Silo:Connection"] = named;
        }

        var clustering = added.GetValueOrDefault("Silo:Clustering") ?? configuration["Silo:Clustering"];
        if (clustering is not null && !clustering.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            && !clustering.Equals("postgres", StringComparison.OrdinalIgnoreCase))
        {
            return $"--clustering '{clustering}' is not allowed; use localhost or postgres";
        }

        if (added.Count > 0) configuration.AddInMemoryCollection(added);
        return null;
    }
}
