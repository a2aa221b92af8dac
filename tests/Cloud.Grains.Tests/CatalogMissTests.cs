using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;

namespace Cloud.Grains.Tests;

/// <summary>
/// While membership changes, a second activation of the catalog grain may live for a moment; one activated before a
/// create told a client on the six-host bed that the volume just created did not exist. A miss is now read again
/// from storage before it is answered. Here the stored catalog gains a volume behind the activation's back.
/// </summary>
public sealed class CatalogMissTests
{
    [Fact]
    public async Task VolumeStoredByAnotherActivation_IsFound_NotReportedMissing()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var silo = cloud.Silos[0];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec("seen-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid1, 2, 64 << 10, false));

        // Another activation's create, as storage holds it: this activation never saw it.
        var storage = silo.ServiceProvider.GetRequiredKeyedService<IGrainStorage>(CloudGrainStorage.Name);
        var grainId = cloud.Grains(silo).GetGrain<IVolumeCatalogGrain>(0).GetGrainId();
        var stored = new GrainState<VolumeCatalogState>();
        await storage.ReadStateAsync(CloudGrainStorage.CatalogState, grainId, stored);
        var other = info with { Name = "unseen-" + Guid.NewGuid().ToString("N")[..6] };
        stored.State!.Volumes.Add(other);
        await storage.WriteStateAsync(CloudGrainStorage.CatalogState, grainId, stored);

        var volume = await cloud.Client.OpenVolumeAsync(other.Name);
        Assert.Equal(other.Name, volume.Name);
    }
}
