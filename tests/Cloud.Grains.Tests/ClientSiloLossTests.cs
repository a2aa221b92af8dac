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
    /// <summary>Armed by the tests: front-end methods whose next call fails, and with what.</summary>
    private static readonly ConcurrentDictionary<string, Func<Exception>> s_failNext = new();

    private static Task<CloudCluster> StartAsync() =>
        CloudCluster.StartAsync(
            silos: 1,
            configureBuilder: silo => silo.AddIncomingGrainCallFilter(async context =>
            {
                if (context.Grain is IFirstServerGrain
                    && s_failNext.TryRemove(context.InterfaceMethod.Name, out var failure))
                {
                    throw failure();
                }
                await context.Invoke();
            }));

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
            s_failNext[method] = () => new SiloUnavailableException("injected: the gateway could not reach a silo");
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

        s_failNext["WriteAsync"] = () => new CloudStorageException("injected: a member failed");
        var e = await Assert.ThrowsAsync<CloudStorageException>(() => volume.WriteAsync(0, new byte[4096]));
        Assert.Contains("injected", e.Message);
        Assert.Empty(s_failNext);
    }
}
