using System.Reflection;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Cloud.Nbd;
using Cloud.ServiceDefaults;
using Cloud.Storage.Azure;

namespace Cloud.Silo;

/// <summary>
/// Every setting the silo reads: the configuration keys its options classes bind (derived from the classes, so a new
/// property is a new key), the fallback keys it maps onto them, and the environment variables it reads directly.
/// Deployment templates are checked against this list (<c>--print-settings</c> prints it), so that a key nothing reads
/// fails a test instead of being silently ignored in production.
/// </summary>
public static class SiloSettings
{
    /// <summary>Each configuration section and the options class bound from it.</summary>
    public static readonly (string Section, Type Options)[] Sections =
    [
        (SiloHostOptions.SectionName, typeof(SiloHostOptions)),
        (CloudOptions.SectionName, typeof(CloudOptions)),
        (SiloEndpoints.NbdSectionName, typeof(NbdServerOptions)),
        (HttpEndpointOptions.SectionName, typeof(HttpEndpointOptions)),
        (MemberDisks.PageBlobsSectionName, typeof(PageBlobAccountOptions)),
    ];

    /// <summary>
    /// Keys read besides the sections: the ones Aspire, Orleans' configuration-based setup and older templates use,
    /// which fill the sections' gaps (<see cref="SiloConfiguration"/>, <see cref="MemberDisks.BindPageBlobAccount"/>).
    /// A key ending in ':' stands for every key under it.
    /// </summary>
    public static readonly string[] FallbackKeys =
    [
        .. SiloConfiguration.FallbackKeys,
        "Orleans:Clustering:ProviderType",
        "Orleans:Clustering:ConnectionName",
        "ConnectionStrings:",
        .. MemberDisks.FallbackKeys,
        // An array: bound by index (Cloud:DiskPools:0, ...), which the options class's properties do not list.
        "Cloud:DiskPools:",
    ];

    /// <summary>The repeatable command-line option of <see cref="CloudOptions.DiskPools"/>.</summary>
    public const string DiskPoolOption = "--disk-pool";

    /// <summary>
    /// Removes every <c>--disk-pool DIR</c> (or <c>--disk-pool=DIR</c>) from <paramref name="args"/> and returns them as
    /// <c>Cloud:DiskPools:N</c> keys, in order; false, with the one-line error, when one has no value.
    /// </summary>
    public static bool TakeDiskPools(
        ref string[] args,
        out Dictionary<string, string?> pools,
        out string? error)
    {
        pools = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        error = null;
        var rest = new List<string>(args.Length);
        for (var i = 0; i < args.Length; i++)
        {
            string? value;
            if (args[i].StartsWith(DiskPoolOption + "=", StringComparison.Ordinal))
                value = args[i][(DiskPoolOption.Length + 1)..];
            else if (args[i] == DiskPoolOption)
                value = i + 1 < args.Length ? args[++i] : null;
            else
            {
                rest.Add(args[i]);
                continue;
            }
            if (string.IsNullOrWhiteSpace(value))
            {
                error = $"option '{DiskPoolOption}' needs a directory, e.g. {DiskPoolOption} /srv/cloud/pool";
                return false;
            }
            pools[$"{CloudOptions.SectionName}:{nameof(CloudOptions.DiskPools)}:{pools.Count}"] = value;
        }
        args = [.. rest];
        return true;
    }

    /// <summary>
    /// Environment variables read as they are (not as configuration keys): the managed identity, the platform's address
    /// for <c>--address auto</c>, the OTLP endpoint and the hosting environment.
    /// </summary>
    public static readonly string[] EnvironmentVariables =
    [
        SiloCredential.ClientIdVariable,
        .. HostAddress.PlatformVariables,
        CloudTelemetry.OtlpEndpointVariable,
        "DOTNET_ENVIRONMENT",
        "ASPNETCORE_ENVIRONMENT",
    ];

    /// <summary>Every configuration key the silo binds, as <c>Section:Property[:Property]</c>, sorted.</summary>
    public static IReadOnlyList<string> ConfigurationKeys { get; } =
        [.. Sections.SelectMany(s => KeysOf(s.Section, s.Options)).Order(StringComparer.OrdinalIgnoreCase)];

    /// <summary>
    /// Whether the silo reads the environment variable <paramref name="name"/>: one of
    /// <see cref="EnvironmentVariables"/>, or a configuration key written with <c>__</c> for ':'.
    /// </summary>
    public static bool Reads(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (EnvironmentVariables.Contains(name, StringComparer.Ordinal)) return true;
        var key = name.Replace("__", ":", StringComparison.Ordinal);
        return ConfigurationKeys.Contains(key, StringComparer.OrdinalIgnoreCase)
            || FallbackKeys.Any(f => f.EndsWith(':')
                ? key.StartsWith(f, StringComparison.OrdinalIgnoreCase) && key.Length > f.Length
                : key.Equals(f, StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>The lines <c>--print-settings</c> prints: each key and variable the silo reads.</summary>
    public static IEnumerable<string> Describe() =>
        ConfigurationKeys.Select(k => $"{k}  (environment {k.Replace(":", "__", StringComparison.Ordinal)})")
            .Concat(FallbackKeys.Select(k => $"{k}  (fallback)"))
            .Concat(EnvironmentVariables.Select(v => $"{v}  (environment variable)"));

    private static IEnumerable<string> KeysOf(string prefix, Type type)
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.SetMethod is not { IsPublic: true } || property.GetIndexParameters().Length > 0) continue;
            var key = $"{prefix}:{property.Name}";
            var valueType = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (IsScalar(valueType)) yield return key;
            else foreach (var nested in KeysOf(key, valueType)) yield return nested;
        }
    }

    private static bool IsScalar(Type type) =>
        type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal)
        || type == typeof(TimeSpan) || type == typeof(Uri) || type == typeof(DateTimeOffset);
}
