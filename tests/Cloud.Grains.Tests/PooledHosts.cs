using Cloud.Grains.Hosting;

namespace Cloud.Grains.Tests;

/// <summary>
/// An in-process cluster of three silos, each posing as its own host (<c>host-SILO</c>) with its own disk pool, so
/// that a member of one silo's pool is another host's file to the other two and is reached through the disk service.
/// </summary>
public sealed class PooledHosts : IAsyncLifetime, IAsyncDisposable
{
    private CloudCluster? _cluster;
    private Action<Orleans.Hosting.ISiloBuilder>? _configureBuilder;
    private Action<CloudOptions>? _configure;

    /// <summary>
    /// Starts such a cluster outside a fixture, with more for every silo's builder (e.g. a grain call filter that
    /// injects faults into the disk service); dispose it at the end of the test.
    /// </summary>
    public static async Task<PooledHosts> StartAsync(
        Action<Orleans.Hosting.ISiloBuilder>? configureBuilder = null,
        Action<CloudOptions>? configure = null)
    {
        var hosts = new PooledHosts { _configureBuilder = configureBuilder, _configure = configure };
        try
        {
            await hosts.InitializeAsync();
            return hosts;
        }
        catch
        {
            await hosts.DisposeAsync();
            throw;
        }
    }

    /// <summary>The directory holding each silo's pool (one subdirectory per silo name).</summary>
    public string PoolRoot { get; } =
        Path.Combine(Path.GetTempPath(), "cloud-pools-" + Guid.NewGuid().ToString("N"));

    /// <summary>The cluster; valid once xunit initialized the fixture.</summary>
    public CloudCluster Cluster => _cluster ?? throw new InvalidOperationException("the cluster is not started");

    /// <summary>The host name a silo poses as.</summary>
    public static string HostOf(string siloName) => "host-" + siloName;

    /// <summary>The pool directory of a silo.</summary>
    public string PoolOf(string siloName) => Path.Combine(PoolRoot, siloName);

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(PoolRoot);
        _cluster = await CloudCluster.StartAsync(
            3,
            configureSilo: (silo, o) =>
            {
                Directory.CreateDirectory(PoolOf(silo));
                o.HostName = HostOf(silo);
                o.DiskPools = [PoolOf(silo)];
                _configure?.Invoke(o);
            },
            configureBuilder: _configureBuilder);
        // Placement reads the pools from the load table: wait until every silo has published one.
        await Eventually.TrueAsync(
            () => Cluster.Silos.All(s => Cluster.Service<Cloud.Grains.Delegation.LoadTable>(s).Entries
                .Count(e => e.PoolCapacityBytes > 0) == 3),
            "every silo sees three hosts with a disk pool");
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_cluster is not null) await _cluster.DisposeAsync();
        try { Directory.Delete(PoolRoot, recursive: true); } catch (IOException) { }
    }

    ValueTask IAsyncDisposable.DisposeAsync() => new(DisposeAsync());
}
