using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// One bed of three hosts for a whole test class (starting three silos costs tens of seconds on two cores), on its
/// own PostgreSQL server.
/// </summary>
public sealed class ThreeHosts : IAsyncLifetime
{
    private PostgresServer? _postgres;
    private Cloud.HostBed.HostBed? _bed;

    /// <summary>The bed; valid once xunit initialized the fixture.</summary>
    public Cloud.HostBed.HostBed Bed => _bed ?? throw new InvalidOperationException("the bed is not started");

    /// <summary>The PostgreSQL server the bed's database lives on.</summary>
    public PostgresServer Postgres => _postgres ?? throw new InvalidOperationException("PostgreSQL is not started");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync();
        _bed = await Cloud.HostBed.HostBed.StartAsync(_postgres, new HostBedOptions { Hosts = 3 });
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_bed is not null) await _bed.DisposeAsync();
        if (_postgres is not null) await _postgres.DisposeAsync();
    }
}

/// <summary>The multi-host tests run one at a time: each bed is three silos on a 2-core machine.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MultiHostCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "multi-host";
}
