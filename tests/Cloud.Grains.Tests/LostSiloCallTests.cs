using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

/// <summary>
/// Calls a first server makes that meet a lost silo: between a silo's death and the cluster declaring it, calls to
/// grains it hosted (or whose directory entries it kept) fail until Orleans places them anew. A request must wait that
/// out rather than fail (through NBD, an EIO). Each test fails the next calls of one grain method, as if that grain's
/// silo were unreachable.
/// </summary>
public sealed class LostSiloCallTests
{
    /// <summary>
    /// Telling the lock grain which silo took a write's copy: the copy is with its target already, so the write must not
    /// fail for it (it would commit anyway).
    /// </summary>
    [Fact]
    public async Task SetTargetMeetingALostSilo_IsAskedAgain_AndTheWriteSucceeds()
    {
        var loss = new InjectedSiloLoss(typeof(IPartitionLockGrain), nameof(IPartitionLockGrain.SetTargetAsync));
        await using var cloud = await loss.StartAsync();
        var name = "set-target-" + Guid.NewGuid().ToString("N")[..6];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);
        var data = Blocks.Pattern(64 << 10, 7);

        // The partition's first write: its copy goes to a new target, which the lock grain is then told.
        loss.Arm(2);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        Assert.True(loss.AllMet, "the injected failures were not all met");
        var lockGrain = cloud.Grains(cloud.Silos[0]).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(info, 0));
        Assert.Equal(cloud.Silos[0].Name, (await lockGrain.GetControlAsync()).ActiveTarget);
        Assert.Equal(data, await frontEnd.ReadAsync(name, 0, data.Length));
    }

    /// <summary>
    /// The writer slot a silo asks for when it first opens a volume (the crash trials' read right after a kill once
    /// failed here).
    /// </summary>
    [Fact]
    public async Task WriterSlotCallMeetingALostSilo_IsAskedAgain_AndTheVolumeOpens()
    {
        var loss = new InjectedSiloLoss(typeof(IWriterSlotsGrain), nameof(IWriterSlotsGrain.GetWriterSlotAsync));
        await using var cloud = await loss.StartAsync();
        var name = "slot-" + Guid.NewGuid().ToString("N")[..6];
        var data = Blocks.Pattern(64 << 10, 11);

        // Armed before anything opens a volume on the silo: the first open asks for the slot.
        loss.Arm(2);
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        Assert.True(loss.AllMet, "the injected failures were not all met");
        Assert.Equal(data, await frontEnd.ReadAsync(name, 0, data.Length));
    }

    /// <summary>
    /// A read through a silo of another host than the volume's files goes to a RAID worker of that host, whose silo may
    /// have just died (or, with one silo there, is being restarted): the read waits for a live one.
    /// </summary>
    [Fact]
    public async Task RemoteWorkerReadMeetingALostSilo_IsAskedAgain_AndTheReadIsAnswered()
    {
        var loss = new InjectedSiloLoss(typeof(IRaidWorkerGrain), nameof(IRaidWorkerGrain.ReadAsync));
        await using var cloud = await loss.StartAsync(silos: 2, configureSilo: (silo, o) => o.HostName = HostOf(silo));
        var name = "remote-read-" + Guid.NewGuid().ToString("N")[..6];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var reader = cloud.Silos.Single(s => HostOf(s.Name) != info.MemberHost(0));
        var frontEnd = cloud.FrontEnd(reader);
        var data = Blocks.Pattern(128 << 10, 13);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        loss.Arm(2);
        var read = await frontEnd.ReadAsync(name, 0, data.Length);

        Assert.True(loss.AllMet, "the injected failures were not all met: the read did not go to the other host's worker");
        Assert.Equal(data, read);
    }

    /// <summary>
    /// With no live silo on the volume's host for the whole wait, the read fails with the error that names the host
    /// to start.
    /// </summary>
    [Fact]
    public async Task RemoteRead_WhenTheVolumesHostHasNoLiveSilo_FailsAfterTheWait_NamingTheHost()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 2,
            configure: o => o.RedelegationTimeout = TimeSpan.FromSeconds(2),
            configureSilo: (silo, o) => o.HostName = HostOf(silo));
        var name = "hostless-" + Guid.NewGuid().ToString("N")[..6];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var owner = cloud.Silos.Single(s => HostOf(s.Name) == info.MemberHost(0));
        var reader = cloud.Silos.Single(s => s != owner);
        var frontEnd = cloud.FrontEnd(reader);
        await frontEnd.WriteAsync(name, 0, Blocks.Pattern(128 << 10, 17), forceUnitAccess: true);

        await cloud.Cluster.StopSiloAsync(owner);
        var table = cloud.Service<Cloud.Grains.Delegation.LoadTable>(reader);
        await Eventually.TrueAsync(
            () => table.Entries.All(e => e.HostName != info.MemberHost(0) || table.Find(e.SiloAddress) is null),
            "the reader's load table has no live silo of the volume's host");

        var failed = await Assert.ThrowsAsync<CloudStorageException>(() => frontEnd.ReadAsync(name, 0, 4096));
        Assert.Contains($"no live silo reaches volume '{name}'", failed.Message, StringComparison.Ordinal);
        Assert.Contains($"start a silo there (--host-name {info.MemberHost(0)})", failed.Message, StringComparison.Ordinal);
    }

    /// <summary>A trim's call to the RAID worker (whole blocks; the sectors of a block it covers in part are written).</summary>
    [Fact]
    public async Task TrimMeetingALostSilo_IsAskedAgain_AndTheBlocksReadAsZeroes()
    {
        var loss = new InjectedSiloLoss(typeof(IRaidWorkerGrain), nameof(IRaidWorkerGrain.TrimAsync));
        await using var cloud = await loss.StartAsync();
        var name = "trim-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var frontEnd = cloud.FrontEnd(cloud.Silos[0]);
        var data = Blocks.Pattern(128 << 10, 19);
        await frontEnd.WriteAsync(name, 0, data, forceUnitAccess: true);

        loss.Arm(2);
        await frontEnd.TrimAsync(name, 0, data.Length);

        Assert.True(loss.AllMet, "the injected failures were not all met");
        Assert.Equal(new byte[data.Length], await frontEnd.ReadAsync(name, 0, data.Length));
    }

    private static string HostOf(string siloName) => "host-" + siloName;

    /// <summary>Fails the next armed calls of one grain interface's method with a <see cref="SiloUnavailableException"/>.</summary>
    private sealed class InjectedSiloLoss(Type grainInterface, string method)
    {
        private int _left;

        /// <summary>True once every armed call failed (and none is left armed).</summary>
        public bool AllMet => Volatile.Read(ref _left) < 0;

        public void Arm(int calls) => Volatile.Write(ref _left, calls);

        public Task<CloudCluster> StartAsync(int silos = 1, Action<string, CloudOptions>? configureSilo = null) =>
            CloudCluster.StartAsync(
                silos,
                configureSilo: configureSilo,
                configureBuilder: silo => silo.AddIncomingGrainCallFilter(async context =>
                {
                    if (grainInterface.IsInstanceOfType(context.Grain)
                        && context.InterfaceMethod.Name == method
                        && Interlocked.Decrement(ref _left) >= 0)
                    {
                        throw new SiloUnavailableException($"injected: the silo of {grainInterface.Name} is unreachable");
                    }
                    await context.Invoke();
                }));
    }
}
