using System.Collections.Concurrent;
using Cloud.Grains.Abstractions;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// The SDK's requests that meet a lost silo: between a silo's death and the cluster declaring it, a gateway may fail to
/// place a request (its directory lookup lands on the dead silo), as the crash trials' reads right after a kill showed.
/// The volume handle asks again rather than pass the failure to the program; other failures reach it at once.
/// </summary>
public sealed class ClientSiloLossTests
{
    /// <summary>
    /// Armed by the tests: methods (<c>Interface.Method</c>) whose next call fails, and with what. The tests of this
    /// class run one after another (one class, one collection), so they share it without clearing each other's.
    /// </summary>
    private static readonly ConcurrentDictionary<string, Func<Exception>> s_failNext = new();

    private static Task<CloudCluster> StartAsync() =>
        CloudCluster.StartAsync(
            silos: 1,
            configureBuilder: silo => silo.AddIncomingGrainCallFilter(async context =>
            {
                if (s_failNext.TryRemove($"{context.InterfaceMethod.DeclaringType?.Name}.{context.InterfaceMethod.Name}", out var failure))
                    throw failure();
                await context.Invoke();
            }));

    private static Exception Lost() => new SiloUnavailableException("injected: the gateway could not reach a silo");

    [Fact]
    public async Task ReadWriteFlushAndTrim_MeetingALostSiloOnce_AreAskedAgain_AndSucceed()
    {
        s_failNext.Clear();
        await using var cloud = await StartAsync();
        var name = "client-loss-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var volume = await cloud.Client.OpenVolumeAsync(name);
        var data = Blocks.Pattern(64 << 10, 13);

        foreach (var method in new[] { "WriteAsync", "FlushAsync", "ReadAsync", "TrimAsync" })
            s_failNext[$"{nameof(IFirstServerGrain)}.{method}"] = Lost;
        await volume.WriteAsync(0, data);
        await volume.FlushAsync();
        var read = new byte[data.Length];
        await volume.ReadAsync(0, read);
        await volume.TrimAsync(0, 4096);

        Assert.Empty(s_failNext);
        Assert.Equal(data, read);
        var trimmed = new byte[4096];
        await volume.ReadAsync(0, trimmed);
        Assert.Equal(new byte[4096], trimmed);
    }

    [Fact]
    public async Task FailureOfTheRequestItself_IsNotAskedAgain()
    {
        s_failNext.Clear();
        await using var cloud = await StartAsync();
        var name = "client-refused-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var volume = await cloud.Client.OpenVolumeAsync(name);

        s_failNext[$"{nameof(IFirstServerGrain)}.WriteAsync"] = () => new CloudStorageException("injected: a member failed");
        var e = await Assert.ThrowsAsync<CloudStorageException>(() => volume.WriteAsync(0, new byte[4096]));
        Assert.Contains("injected", e.Message);
        Assert.Empty(s_failNext);
    }

    /// <summary>
    /// The control plane's questions (what an operator runs right after a host died) are asked again; a change, which
    /// may have been made before its answer was lost, is not.
    /// </summary>
    [Fact]
    public async Task ControlPlaneQuestions_MeetingALostSiloOnce_AreAskedAgain_ButAChangeIsNot()
    {
        s_failNext.Clear();
        await using var cloud = await StartAsync();
        var name = "client-control-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));

        foreach (var method in new[]
        {
            $"{nameof(IVolumeCatalogGrain)}.{nameof(IVolumeCatalogGrain.ListAsync)}",
            $"{nameof(IVolumeCatalogGrain)}.{nameof(IVolumeCatalogGrain.GetAsync)}",
            $"{nameof(IVolumeGrain)}.{nameof(IVolumeGrain.ShowAsync)}",
            $"{nameof(IVolumeGrain)}.{nameof(IVolumeGrain.GetRebuildAsync)}",
            $"{nameof(ILoadTableGrain)}.{nameof(ILoadTableGrain.GetStatusAsync)}",
        })
        {
            s_failNext[method] = Lost;
        }
        Assert.Contains(await cloud.Client.ListVolumesAsync(), v => v.Name == name);
        Assert.Equal(name, (await cloud.Client.OpenVolumeAsync(name)).Name);
        Assert.Equal(VolumeHealthState.Healthy, (await cloud.Client.ShowVolumeAsync(name)).Health);
        Assert.Null(await cloud.Client.GetRebuildAsync(name));
        Assert.NotEmpty((await cloud.Client.GetClusterStatusAsync()).Silos);
        Assert.Empty(s_failNext);

        s_failNext[$"{nameof(IVolumeCatalogGrain)}.{nameof(IVolumeCatalogGrain.DeleteAsync)}"] = Lost;
        await Assert.ThrowsAsync<SiloUnavailableException>(() => cloud.Client.DeleteVolumeAsync(name));
        Assert.Contains(await cloud.Client.ListVolumesAsync(), v => v.Name == name);
    }
}
