using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.Runtime;
using Orleans.TestingHost;

namespace Cloud.Grains.Tests;

/// <summary>
/// A real in-process cluster of three silos with the Cloud grains, file-backed disks in a temporary directory and
/// fast failure detection, so that killing a silo is noticed in a few seconds.
/// </summary>
public sealed class CloudCluster : IAsyncDisposable
{
    private CloudCluster(InProcessTestCluster cluster, string dataDirectory)
    {
        Cluster = cluster;
        DataDirectory = dataDirectory;
    }

    public InProcessTestCluster Cluster { get; }

    public string DataDirectory { get; }

    public CloudClient Client => new(Cluster.Client);

    /// <param name="silos">How many silos.</param>
    /// <param name="configure">Options every silo gets.</param>
    /// <param name="configureSilo">Options of one silo, by its name (e.g. its own host name and disk pool).</param>
    /// <param name="configureBuilder">More for every silo's builder (e.g. a grain call filter that injects faults).</param>
    public static async Task<CloudCluster> StartAsync(
        int silos = 3,
        Action<CloudOptions>? configure = null,
        Action<string, CloudOptions>? configureSilo = null,
        Action<ISiloBuilder>? configureBuilder = null)
    {
        var data = Path.Combine(Path.GetTempPath(), "cloud-grains-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(data);
        var builder = new InProcessTestClusterBuilder((short)silos);
        builder.ConfigureSilo((siloOptions, silo) =>
        {
            silo.AddCloud(o =>
            {
                o.DataDirectory = data;
                o.LockLease = TimeSpan.FromSeconds(5);
                o.LeaseCheckPeriod = TimeSpan.FromMilliseconds(100);
                o.LoadPublishPeriod = TimeSpan.FromMilliseconds(100);
                o.LoadEntryTimeToLive = TimeSpan.FromSeconds(1);
                o.RedelegationTimeout = TimeSpan.FromSeconds(90);
                configure?.Invoke(o);
                configureSilo?.Invoke(siloOptions.SiloName, o);
            });
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromMilliseconds(500);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
                o.TableRefreshTimeout = TimeSpan.FromSeconds(1);
                o.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(1);
            });
            silo.Configure<SiloMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromSeconds(30));
            configureBuilder?.Invoke(silo);
        });
        builder.ConfigureClient(
            client => client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromSeconds(30)));
        var cluster = builder.Build();
        await cluster.DeployAsync();
        var result = new CloudCluster(cluster, data);
        await result.WaitForLoadTableAsync(silos);
        return result;
    }

    public IReadOnlyList<InProcessSiloHandle> Silos => Cluster.Silos;

    public InProcessSiloHandle Silo(string name) => Cluster.Silos.Single(s => s.Name == name);

    public T Service<T>(InProcessSiloHandle silo) where T : notnull => silo.ServiceProvider.GetRequiredService<T>();

    /// <summary>The front end of a given silo: calls from inside a silo activate the stateless worker there.</summary>
    public IFirstServerGrain FrontEnd(InProcessSiloHandle silo)
        => Service<IGrainFactory>(silo).GetGrain<IFirstServerGrain>(0);

    public IGrainFactory Grains(InProcessSiloHandle silo) => Service<IGrainFactory>(silo);

    /// <summary>Waits until every live silo's load table lists <paramref name="count"/> fresh silos.</summary>
    public async Task WaitForLoadTableAsync(int count) =>
        await Eventually.TrueAsync(
            () => Cluster.Silos.Where(s => s.IsActive).All(s => Service<LoadTable>(s).Entries.Length == count
                && Service<LoadTable>(s).Entries.All(e => Service<LoadTable>(s).Find(e.SiloAddress) is not null)),
            "every silo sees the whole load table");

    public async ValueTask DisposeAsync()
    {
        try { await Cluster.StopAllSilosAsync(); } catch (Exception) { /* a killed silo may throw on stop */ }
        await Cluster.DisposeAsync();
        try { Directory.Delete(DataDirectory, recursive: true); } catch (IOException) { }
    }
}
