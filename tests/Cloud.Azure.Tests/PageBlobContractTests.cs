using Cloud.Azure.Tests.Infrastructure;
using Cloud.Storage.Devices;

namespace Cloud.Azure.Tests;

/// <summary>The engine's device contract (from Cloud.Testing), on page blobs in Azurite.</summary>
[Collection(AzuriteCollection.Name)]
public sealed class PageBlobContractTests(AzuriteFixture fixture) : BlockDeviceContractTests
{
    protected override async ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes) =>
        await fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "contract", capacityBytes);
}
