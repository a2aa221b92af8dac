using Cloud.Grains.Locks;

namespace Cloud.Grains.Tests;

/// <summary>
/// A partition-lock grain stops tracking a pending version that outlives the re-delegation timeout, though its copy
/// may still wait in a RAID worker's queue (after a kill the queues held 150-190 s of copies, past the 2 min default).
/// A batch must not then merge an older copy under a newer timestamp: the forgotten version, between the two, would be
/// dropped as superseded when it ran.
/// </summary>
public sealed class ForgottenPendingTests
{
    [Fact]
    public async Task PendingVersionForgottenAfterTheRedelegationTimeout_MakesAMergeOverItUnsafe()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 1, configure: o => o.RedelegationTimeout = TimeSpan.FromSeconds(1));
        var silo = cloud.Silos[0];
        var address = silo.SiloAddress.ToParsableString();
        var lockGrain = cloud.Grains(silo).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");
        var older = await lockGrain.NextTimestampAsync(0, 0, address);
        var forgotten = await lockGrain.NextTimestampAsync(0, 0, address);
        await Eventually.TrueAsync(
            async () => (await lockGrain.GetControlAsync()).PendingWrites == 0,
            "the grain dropping the versions that outlived the re-delegation timeout");
        var newer = await lockGrain.NextTimestampAsync(0, 0, address);
        var request = new LockRequest(0, 0, LockMode.Exclusive, address, TimeSpan.FromMinutes(1), false);

        var mixed = await lockGrain.AcquireForWriteAsync(request, 0, 2, [older.Timestamp, newer.Timestamp]);
        Assert.False(
            mixed.Validation.MergeSafe,
            $"a merge of {older.Timestamp} and {newer.Timestamp} was called safe while {forgotten.Timestamp} may be in flight");
        await lockGrain.ReleaseAsync(mixed.Grant.FencingToken);
    }
}
