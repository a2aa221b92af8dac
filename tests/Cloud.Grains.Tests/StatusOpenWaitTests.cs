using Cloud.Grains.Abstractions;
using Cloud.Grains.Disks;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

/// <summary>
/// `volume show` answers while the volume is still opening on its worker silo (a host of its members that just died
/// or hangs), saying so, instead of timing out after 30 s (CI, a few seconds after the multi-host bed killed a pool
/// host: "Response did not arrive on time in 00:00:30 ... IVolumeGrain.ShowAsync").
/// </summary>
public sealed class StatusOpenWaitTests
{
    /// <summary>While set by the test, every disk-service open waits for it.</summary>
    private static volatile TaskCompletionSource? s_hold;

    [Fact]
    public async Task VolumeShow_WhileAMembersHostHangsTheOpen_SaysItIsStillOpening_ThenShowsTheVolume()
    {
        await using var hosts = await PooledHosts.StartAsync(silo => silo.AddIncomingGrainCallFilter(async context =>
        {
            if (context.Grain is IHostDiskGrain && context.InterfaceMethod.Name == nameof(IHostDiskGrain.OpenAsync)
                && s_hold is { } hold)
                await hold.Task;
            await context.Invoke();
        }));
        var cloud = hosts.Cluster;
        var name = "opening-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        foreach (var silo in cloud.Silos)
        {
            cloud.Service<RaidMaintenance>(silo).StatusOpenWait = TimeSpan.FromSeconds(1);
            await cloud.Grains(silo).GetGrain<IRaidWorkerGrain>(silo.Name).CloseVolumeAsync(name);
        }

        s_hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            var opening = await cloud.Client.ShowVolumeAsync(name).WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal(VolumeHealthState.Unavailable, opening.Health);
            Assert.Contains("still opening", opening.Message, StringComparison.Ordinal);
            Assert.Equal(name, opening.Info.Name);
        }
        finally
        {
            s_hold.TrySetResult();
            s_hold = null;
        }
        await Eventually.TrueAsync(
            async () => (await cloud.Client.ShowVolumeAsync(name)).Health == VolumeHealthState.Healthy,
            "the volume shows healthy once its members opened");
    }
}
