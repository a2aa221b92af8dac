using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;
using Orleans.Core.Internal;

namespace Cloud.Grains.Tests;

/// <summary>
/// A block on a missing member has no timestamp of its own on disk; its row's parity timestamp is the newest write to
/// any block of the row. Taken for the block's own, it made an acknowledged copy that was never written look
/// superseded by a newer write to another block of the row, and the copy was dropped: on the host bed, a RAID-6 with
/// its two killed hosts holding the block read back the data the acknowledged write had replaced.
/// </summary>
public sealed class MissingBlockTimestampTests
{
    [Fact]
    public async Task OlderCopyOfABlockOnAMissingMember_IsWritten_ThoughANewerWriteToItsRowCommittedFirst()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var (name, key, lockGrain, address) = await DegradedVolumeAsync(cloud);

        // A writer that held stripe 0 ended without a commit (as a killed delegate does): writers must check the disk.
        var held = await lockGrain.AcquireAsync(
            new LockRequest(0, 0, LockMode.Exclusive, address, TimeSpan.FromMinutes(1), false));
        await lockGrain.ReleaseAsync(held.FencingToken);

        // Version T1 of block 0 (on the failed member) is in flight; T2, newer, of block 16 (D1, same row) commits.
        var older = await lockGrain.NextTimestampAsync(0, 0, address);
        await cloud.FrontEnd(cloud.Silos[0]).WriteAsync(name, 64 << 10, Blocks.Pattern(4096, 2), forceUnitAccess: true);

        await DeliverAndCheckAsync(cloud, name, key, older.Timestamp);
    }

    [Fact]
    public async Task OlderCopyOfABlockOnAMissingMember_IsWritten_AlsoWhenItsLockGrainMovedMeanwhile()
    {
        await using var cloud = await CloudCluster.StartAsync(silos: 1);
        var (name, key, lockGrain, address) = await DegradedVolumeAsync(cloud);

        // T1 of block 0 is in flight, T2 of block 16 (same row) commits; then the lock grain moves (its silo died, in
        // the bed), so the next activation knows neither, and T1 predates it.
        var older = await lockGrain.NextTimestampAsync(0, 0, address);
        await cloud.FrontEnd(cloud.Silos[0]).WriteAsync(name, 64 << 10, Blocks.Pattern(4096, 2), forceUnitAccess: true);
        await lockGrain.AsReference<IGrainManagementExtension>().DeactivateOnIdle();
        var probe = await lockGrain.NextTimestampAsync(0, 0, address);
        Assert.True(probe.Timestamp > older.Timestamp);
        await lockGrain.SettleAsync([probe.Timestamp]);

        await DeliverAndCheckAsync(cloud, name, key, older.Timestamp);
    }

    /// <summary>
    /// A RAID-5 of 3 (stripe 0: D0 on member 0, D1 on member 1, P on member 2) with member 0 failed; its partition 0's
    /// lock grain and this silo's address.
    /// </summary>
    private static async Task<(string Name, string Key, IPartitionLockGrain LockGrain, string Address)> DegradedVolumeAsync(
        CloudCluster cloud)
    {
        var silo = cloud.Silos[0];
        var name = "missing-ts-" + Guid.NewGuid().ToString("N")[..6];
        var info = await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        await cloud.Client.FailDiskAsync(name, 0);
        var key = VolumeMath.PartitionKey(info, 0);
        return (name, key, cloud.Grains(silo).GetGrain<IPartitionLockGrain>(key), silo.SiloAddress.ToParsableString());
    }

    /// <summary>Delivers version <paramref name="timestamp"/> of block 0 as a re-sent copy; it must be written.</summary>
    private static async Task DeliverAndCheckAsync(CloudCluster cloud, string name, string key, long timestamp)
    {
        var silo = cloud.Silos[0];
        var data = Blocks.Pattern(4096, 1);
        var write = new ReplicatedWrite(Guid.NewGuid(), name, 0, data, timestamp, false, silo.Name, Redelegated: true);
        var receipt = await cloud.Grains(silo).GetGrain<IDelegationGrain>(key).AcceptAsync(write);
        var worker = cloud.Grains(silo).GetGrain<IRaidWorkerGrain>(receipt.TargetSilo);
        WriteReport report;
        do report = await worker.WaitCommittedAsync(write.WriteId, TimeSpan.FromSeconds(5));
        while (report.Outcome == WriteOutcome.Pending);

        Assert.Equal(WriteOutcome.Committed, report.Outcome);
        Assert.Equal(data, await cloud.FrontEnd(silo).ReadAsync(name, 0, data.Length));
    }
}
