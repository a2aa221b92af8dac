using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// One bed of three hosts whose silos share one Azure page-blob account (Azurite), on its own PostgreSQL server: a
/// volume on page blobs is in every host's reach, as it would be on separate machines, where a file member would lie
/// in one host's private directory. One per test class, like <see cref="ThreeHosts"/>.
/// </summary>
public sealed class ThreeHostsOnPageBlobs : IAsyncLifetime
{
    private PostgresServer? _postgres;
    private AzuriteInstance? _azurite;
    private Cloud.HostBed.HostBed? _bed;

    /// <summary>The bed; valid once xunit initialized the fixture.</summary>
    public Cloud.HostBed.HostBed Bed => _bed ?? throw new InvalidOperationException("the bed is not started");

    /// <summary>The page-blob service every host uses.</summary>
    public AzuriteInstance Azurite => _azurite ?? throw new InvalidOperationException("Azurite is not started");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync();
        _azurite = await AzuriteInstance.StartAsync();
        _bed = await Cloud.HostBed.HostBed.StartAsync(_postgres,
            new HostBedOptions { Hosts = 3, PageBlobConnectionString = _azurite.ConnectionString() });
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_bed is not null) await _bed.DisposeAsync();
        if (_azurite is not null) await _azurite.DisposeAsync();
        if (_postgres is not null) await _postgres.DisposeAsync();
    }
}
