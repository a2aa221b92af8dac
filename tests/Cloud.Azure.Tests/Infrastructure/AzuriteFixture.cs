using Cloud.Storage.Azure;

namespace Cloud.Azure.Tests.Infrastructure;

/// <summary>One Azurite shared by the tests of the "Azurite" collection; each test uses its own container.</summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    private AzuriteInstance? _azurite;
    private int _containerCount;

    public AzuriteInstance Azurite => _azurite ?? throw new InvalidOperationException("Azurite has not started.");

    public async Task InitializeAsync() => _azurite = await AzuriteInstance.StartAsync();

    public async Task DisposeAsync()
    {
        if (_azurite is not null)
        {
            await _azurite.DisposeAsync();
        }
    }

    /// <summary>A container name no other test in this run uses.</summary>
    public string NewContainerName() => $"test-{Interlocked.Increment(ref _containerCount)}-{Guid.NewGuid():N}";

    /// <summary>
    /// Device options for tests: short back-offs, so a test of a dead service fails in seconds rather than a minute.
    /// </summary>
    public static PageBlobDeviceOptions FastRetryOptions(int maxRetries = 3) => new()
    {
        MaxRetries = maxRetries,
        RetryDelay = TimeSpan.FromMilliseconds(20),
        MaxRetryDelay = TimeSpan.FromMilliseconds(200),
        NetworkTimeout = TimeSpan.FromSeconds(10),
    };

    public PageBlobConnection Connect(PageBlobDeviceOptions? options = null, int? viaPort = null) =>
        PageBlobConnection.FromConnectionString(Azurite.ConnectionString(viaPort), options ?? FastRetryOptions());
}

[CollectionDefinition(Name)]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>
{
    public const string Name = "Azurite";
}
