using Cloud.Grains.Abstractions;
using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// One bed of six hosts, each with a disk pool, and a rebuild delay shortened to ten seconds
/// (<c>Cloud:HostDownRebuildDelay</c>): one per test class.
/// </summary>
public sealed class SixHostsWithPools : IAsyncLifetime
{
    /// <summary>The rebuild delay every silo of the bed is given.</summary>
    public static readonly TimeSpan Delay = TimeSpan.FromSeconds(10);

    private PostgresServer? _postgres;
    private Cloud.HostBed.HostBed? _bed;

    /// <summary>The bed; valid once xunit initialized the fixture.</summary>
    public Cloud.HostBed.HostBed Bed => _bed ?? throw new InvalidOperationException("the bed is not started");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync();
        var options = new HostBedOptions { Hosts = 6, DiskPools = true };
        options.Environment["Cloud__HostDownRebuildDelay"] = Delay.ToString("c", System.Globalization.CultureInfo.InvariantCulture);
        _bed = await Cloud.HostBed.HostBed.StartAsync(_postgres, options);
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_bed is not null) await _bed.DisposeAsync();
        if (_postgres is not null) await _postgres.DisposeAsync();
    }
}

/// <summary>
/// A host gone for good (issue 15, items 5 and 6): after the delay the cluster rebuilds its members onto another
/// host's pool by itself, never two members of one volume on one host; the volume reads back what was written, scrubs
/// clean, and its member files agree with docs/FORMAT.md as an outside reader checks them.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class HostDownRebuildBedTests(SixHostsWithPools hosts) : IClassFixture<SixHostsWithPools>
{
    private const int ChunkBytes = 64 << 10;

    private Cloud.HostBed.HostBed Bed => hosts.Bed;

    [Fact]
    public async Task KilledHostForGood_IsRebuiltOntoTheSixthHost_AndEveryStripesParityIsRight()
    {
        await using var client = await Bed.ConnectToAsync(0);
        await Eventually.TrueAsync(
            async () => (await client.GetClusterStatusAsync()).Silos.Count(s => s.PoolCapacityBytes > 0) == Bed.Hosts.Count,
            "every host publishes its disk pool");
        // RAID-5 4+1 on five of the six hosts; RAID-6 4+2 on all six, so that no host is eligible for its lost member.
        var size = 4L * ChunkBytes * 16;
        var raid5 = await client.CreateVolumeAsync(new VolumeSpec("r5", size, VolumeLevel.Raid5, 5, ChunkBytes, false));
        var raid6 = await client.CreateVolumeAsync(new VolumeSpec("r6", size, VolumeLevel.Raid6, 6, ChunkBytes, false));
        var image = Blocks.Pattern((int)size, seed: 15);
        foreach (var name in new[] { "r5", "r6" })
        {
            var volume = await client.OpenVolumeAsync(name);
            await volume.WriteAsync(0, image);
            await volume.FlushAsync();
        }

        var spare = Bed.Hosts.Single(h => Enumerable.Range(0, 5).All(i => raid5.MemberHost(i) != h.Name));
        // The lost host: a member host of r5 other than the one the client talks to.
        var lostIndex = Enumerable.Range(0, 5).Last(i => raid5.MemberHost(i) != Bed.Hosts[0].Name);
        var lost = Bed.Hosts.Single(h => h.Name == raid5.MemberHost(lostIndex));
        var killedAt = DateTimeOffset.UtcNow;
        await Bed.KillAsync(lost.Index);

        await Eventually.TrueAsync(
            // Retried: a call routed through the killed host is refused until the cluster notices (CI met one).
            async () => await CrashScenario.RetryAsync(() => client.ShowVolumeAsync("r5")) is var s
                && s.Info.MemberHost(lostIndex) == spare.Name
                && s.Health == VolumeHealthState.Healthy
                && s.Disks.All(d => d.State == DiskState.Active),
            $"r5's member {lostIndex} is rebuilt from {lost.Name} onto {spare.Name}",
            TimeSpan.FromMinutes(4),
            TimeSpan.FromSeconds(1));
        Assert.True(DateTimeOffset.UtcNow - killedAt >= SixHostsWithPools.Delay, "rebuilt before the delay");

        var status = await client.ShowVolumeAsync("r5");
        Assert.Equal(5, Enumerable.Range(0, 5).Select(status.Info.MemberHost).Distinct().Count());
        Assert.StartsWith(spare.PoolDirectory + Path.DirectorySeparatorChar, status.Info.DiskPaths[lostIndex], StringComparison.Ordinal);
        var back = new byte[size];
        await (await client.OpenVolumeAsync("r5")).ReadAsync(0, back);
        Assert.True(image.AsSpan().SequenceEqual(back), "r5 read back other data than was written");
        Assert.Equal(0, (await client.ScrubAsync("r5", repair: false)).Mismatches);
        var members = status.Info.DiskPaths.Select(File.ReadAllBytes).ToArray();
        Assert.Empty(DocumentedFormat.CheckParity(members));

        // r6 has a member on every host: none is eligible, so its rebuild waits and says why, and it still serves.
        await Eventually.TrueAsync(
            async () => (await client.ShowVolumeAsync("r6")).Rebuild?.Error?.Contains("no host can take member", StringComparison.Ordinal) == true,
            "r6 shows why its rebuild waits",
            TimeSpan.FromMinutes(1),
            TimeSpan.FromSeconds(1));
        var r6 = await client.ShowVolumeAsync("r6");
        Assert.Equal(raid6.DiskPaths.ToArray(), r6.Info.DiskPaths.ToArray());
        await (await client.OpenVolumeAsync("r6")).ReadAsync(0, back);
        Assert.True(image.AsSpan().SequenceEqual(back), "r6 read back other data than was written");
    }
}
