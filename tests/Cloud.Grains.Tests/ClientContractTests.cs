using System.Reflection;
using Cloud.Client;
using Cloud.Grains.Abstractions;

namespace Cloud.Grains.Tests;

/// <summary>What the client SDK carries: only the grains clients call, and no server-side packages.</summary>
public sealed class ClientContractTests
{
    [Fact]
    public void TheAbstractions_HoldOnlyTheGrainsClientsCall()
    {
        var grains = typeof(IVolumeGrain).Assembly.GetExportedTypes()
            .Where(t => t.IsInterface && typeof(IAddressable).IsAssignableFrom(t))
            .Select(t => t.Name).Order(StringComparer.Ordinal);

        Assert.Equal(["IFirstServerGrain", "ILoadTableGrain", "IVolumeCatalogGrain", "IVolumeGrain"], grains);
    }

    [Fact]
    public void TheClient_ReferencesNoServerHostingAndNoGrainPersistence()
    {
        var closure = ReferenceClosure(typeof(CloudClient).Assembly);

        Assert.Contains("Cloud.Clustering.Postgres", closure);
        Assert.Contains("Orleans.Clustering.AdoNet", closure);
        Assert.DoesNotContain("Cloud.Hosting.Postgres", closure);
        Assert.DoesNotContain("Orleans.Persistence.AdoNet", closure);
        Assert.DoesNotContain("Cloud.Grains", closure);
    }

    /// <summary>
    /// The names of every assembly the given one references, directly or through others that load here.
    /// </summary>
    private static HashSet<string> ReferenceClosure(Assembly root)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<Assembly>([root]);
        while (pending.TryPop(out var assembly))
        {
            foreach (var reference in assembly.GetReferencedAssemblies())
            {
                if (reference.Name is null || !seen.Add(reference.Name)) continue;
                // Framework assemblies need no walk: none of them references Orleans or Cloud.
                if (reference.Name.StartsWith("System", StringComparison.Ordinal)
                    || reference.Name.StartsWith("Microsoft.Extensions", StringComparison.Ordinal))
                    continue;
                try { pending.Push(Assembly.Load(reference)); }
                catch (FileNotFoundException) { /* not deployed with the tests, so not loaded by the client either */ }
            }
        }
        return seen;
    }
}
