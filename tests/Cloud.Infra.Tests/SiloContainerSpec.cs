using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Cloud.Infra.Tests;

/// <summary>A file a secret volume mounts in the silo container.</summary>
/// <param name="Path">The file's path in the container.</param>
/// <param name="Secret">The container app secret it holds.</param>
/// <param name="FromKeyVault">The secret is a Key Vault reference.</param>
/// <param name="Inline">The secret's value is in the template itself.</param>
internal sealed record SecretFile(string Path, string Secret, bool FromKeyVault, bool Inline);

/// <summary>An HTTP probe of the silo container, as the compiled template gives it.</summary>
internal sealed record ContainerProbe(string Type, string Path, int Port);

/// <summary>
/// The silo container of <c>infra/main.bicep</c> compiled to ARM JSON: its environment, probes and ingress ports, with
/// the template's expressions evaluated against the module parameters the test chooses. The evaluator knows only the
/// forms the template uses (<c>parameters</c>, <c>variables</c>, <c>string</c>, <c>format</c>) and throws on any
/// other, so a new kind of expression is noticed rather than passed through as text.
/// </summary>
internal sealed partial class SiloContainerSpec
{
    private readonly JsonObject _module;
    private readonly IReadOnlyDictionary<string, string> _parameters;

    private SiloContainerSpec(JsonObject module, JsonObject app, IReadOnlyDictionary<string, string> parameters)
    {
        _module = module;
        _parameters = parameters;
        var container = app["properties"]!["template"]!["containers"]!.AsArray().Single()!.AsObject();
        Environment = [.. container["env"]!.AsArray().Select(e => (
            e!["name"]!.GetValue<string>(), Evaluate(e["value"]!.GetValue<string>())))];
        Probes = [.. container["probes"]!.AsArray().Select(p => new ContainerProbe(
            p!["type"]!.GetValue<string>(),
            p["httpGet"]!["path"]!.GetValue<string>(),
            Number(p["httpGet"]!["port"]!)))];
        var mounts = container["volumeMounts"]?.AsArray().ToDictionary(
            m => m!["volumeName"]!.GetValue<string>(), m => Evaluate(m!["mountPath"]!.GetValue<string>()))
            ?? [];
        var secrets = app["properties"]!["configuration"]!["secrets"]?.AsArray().ToDictionary(
            s => s!["name"]!.GetValue<string>(), s => s!.AsObject()) ?? [];
        SecretFiles = [.. (app["properties"]!["template"]!["volumes"]?.AsArray() ?? [])
            .Where(v => v!["storageType"]?.GetValue<string>() == "Secret" && mounts.ContainsKey(v["name"]!.GetValue<string>()))
            .SelectMany(v => v!["secrets"]!.AsArray().Select(f => new SecretFile(
                $"{mounts[v["name"]!.GetValue<string>()]}/{f!["path"]!.GetValue<string>()}",
                f["secretRef"]!.GetValue<string>(),
                secrets.TryGetValue(f["secretRef"]!.GetValue<string>(), out var secret) && secret["keyVaultUrl"] is not null,
                secrets.TryGetValue(f["secretRef"]!.GetValue<string>(), out var inline) && inline["value"] is not null)))];
        var ingress = app["properties"]!["configuration"]!["ingress"]!;
        IngressPorts = [Number(ingress["targetPort"]!), .. ingress["additionalPortMappings"]!.AsArray()
            .Select(m => Number(m!["targetPort"]!))];
    }

    /// <summary>The container's environment, in the template's order, values evaluated.</summary>
    public IReadOnlyList<(string Name, string Value)> Environment { get; }

    /// <summary>The files the container's secret volumes mount, and where each secret comes from.</summary>
    public IReadOnlyList<SecretFile> SecretFiles { get; }

    /// <summary>The liveness and readiness probes.</summary>
    public IReadOnlyList<ContainerProbe> Probes { get; }

    /// <summary>The ingress target port (NBD) and the additional ones (the Orleans gateway).</summary>
    public IReadOnlyList<int> IngressPorts { get; }

    /// <summary>The value of <paramref name="name"/> in the environment; throws naming it when absent.</summary>
    public string this[string name] =>
        Environment.FirstOrDefault(e => e.Name == name) is { Name: not null } entry
            ? entry.Value
            : throw new KeyNotFoundException($"the silo container's environment has no {name}");

    /// <summary>
    /// Compiles <c>main.bicep</c> and reads the silo container, evaluating module parameters from
    /// <paramref name="parameters"/> (a parameter the template uses and the test does not give fails).
    /// </summary>
    public static async Task<SiloContainerSpec> CompileAsync(IReadOnlyDictionary<string, string> parameters)
    {
        var (exitCode, stdout, stderr) = await BicepTests.RunBicepAsync("build", "main.bicep", "--stdout");
        Assert.True(exitCode == 0, $"bicep build main.bicep exited {exitCode}:\n{stderr}");
        var root = JsonNode.Parse(stdout)!.AsObject();
        foreach (var module in Resources(root))
        {
            if (module["type"]?.GetValue<string>() != "Microsoft.Resources/deployments") continue;
            var template = module["properties"]?["template"]?.AsObject();
            var app = template is null
                ? null
                : Resources(template).FirstOrDefault(
                    r => r["type"]?.GetValue<string>() == "Microsoft.App/containerApps");
            if (app is not null) return new SiloContainerSpec(template!, app, parameters);
        }
        throw new InvalidOperationException(
            "main.bicep compiles to no module with a Microsoft.App/containerApps resource");
    }

    private static IEnumerable<JsonObject> Resources(JsonObject template) =>
        template["resources"] switch
        {
            JsonArray array => array.Select(r => r!.AsObject()),
            JsonObject symbolic => symbolic.Select(p => p.Value!.AsObject()),
            _ => [],
        };

    private int Number(JsonNode node) =>
        node.GetValueKind() == System.Text.Json.JsonValueKind.Number
            ? node.GetValue<int>()
            : int.Parse(Evaluate(node.GetValue<string>()), CultureInfo.InvariantCulture);

    private string Evaluate(string value)
    {
        if (!value.StartsWith('[') || value.StartsWith("[[", StringComparison.Ordinal)) return value;
        return Expression(value[1..^1].Trim());
    }

    private string Expression(string text)
    {
        if (Call().Match(text) is not { Success: true } call)
        {
            return text.StartsWith('\'') && text.EndsWith('\'')
                ? text[1..^1].Replace("''", "'", StringComparison.Ordinal)
                : throw new NotSupportedException($"template expression '{text}' is not one the test evaluates");
        }
        var arguments = Arguments(call.Groups["args"].Value).Select(Expression).ToList();
        return call.Groups["name"].Value switch
        {
            "parameters" => _parameters.TryGetValue(arguments[0], out var p)
                ? p
                : throw new KeyNotFoundException($"the test gives no value for the module parameter '{arguments[0]}'"),
            "variables" => _module["variables"]![arguments[0]]!.ToString(),
            "string" => arguments[0],
            "format" => string.Format(
                CultureInfo.InvariantCulture, arguments[0], [.. arguments.Skip(1).Cast<object>()]),
            var other => throw new NotSupportedException($"template function '{other}' is not one the test evaluates"),
        };
    }

    /// <summary>Splits a call's arguments at top-level commas (not inside quotes or parentheses).</summary>
    private static IEnumerable<string> Arguments(string text)
    {
        var depth = 0;
        var quoted = false;
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\'') quoted = !quoted;
            else if (!quoted && c == '(') depth++;
            else if (!quoted && c == ')') depth--;
            else if (!quoted && depth == 0 && c == ',')
            {
                yield return text[start..i].Trim();
                start = i + 1;
            }
        }
        if (text.Trim().Length > 0) yield return text[start..].Trim();
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z]+)\((?<args>.*)\)$", RegexOptions.Singleline)]
    private static partial Regex Call();
}
