using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Microsoft.Extensions.Options;
using Orleans.Core.Internal;

namespace Cloud.Grains.Tests;

/// <summary>
/// Write leases (<see cref="WriteLeases"/>): a silo that is a partition's only writer hands out its timestamps and takes
/// its stripe locks in its own memory, and the partition-lock grain ends the lease (after the batches under it, taking
/// back its pending versions and commits) before it hands anything of the partition to another silo.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class WriteLeaseTests(SharedClusterFixture fixture)
{
    /// <summary>How long a call that must wait for a batch under a lease is watched for completing too early.</summary>
    private static readonly TimeSpan HeldOpen = TimeSpan.FromMilliseconds(500);

    private static readonly TimeSpan Length = TimeSpan.FromSeconds(10);

    private CloudCluster Cloud => fixture.Cloud;

    private sealed record Part(IPartitionLockGrain Grain, string Key, WriteLeases Leases, string Address, string Name);

    private Part Partition(int silo = 0)
    {
        var key = $"{Guid.NewGuid():N}/0";
        var s = Cloud.Silos[silo];
        return new Part(
            Cloud.Grains(s).GetGrain<IPartitionLockGrain>(key), key, Cloud.Service<WriteLeases>(s),
            s.SiloAddress.ToParsableString(), s.Name);
    }

    private static async Task<WriteLeaseGrant> TakeLeaseAsync(Part p)
    {
        var grant = await p.Grain.TryLeaseWritesAsync(p.Address, p.Name, Length);
        Assert.NotNull(grant);
        Assert.True(p.Leases.Add(p.Key, grant), "the silo refused a lease it was just given");
        return grant;
    }

    [Fact]
    public async Task ALease_GoesToTheOnlyWriter_AndToNoOtherSiloMeanwhile()
    {
        var p = Partition();
        var grant = await TakeLeaseAsync(p);
        Assert.True(grant.LastTimestamp - grant.FirstTimestamp + 1 == PartitionLockGrain.WriteLeaseTimestamps);
        Assert.True(p.Leases.TryTimestamp(p.Key, 0, 0, out var ts));
        Assert.Equal(grant.FirstTimestamp, ts);

        var other = Cloud.Silos[1];
        Assert.Null(await p.Grain.TryLeaseWritesAsync(other.SiloAddress.ToParsableString(), other.Name, Length));
        // The holder asking again gets its own lease back.
        Assert.Equal(grant.Id, (await p.Grain.TryLeaseWritesAsync(p.Address, p.Name, Length))!.Id);
        await p.Leases.SettleAsync(p.Key, [ts]);
    }

    [Fact]
    public async Task ATimestampForAnotherSilo_EndsTheLease_AndReadsStillWaitForItsPendingVersion()
    {
        var p = Partition();
        await TakeLeaseAsync(p);
        Assert.True(p.Leases.TryTimestamp(p.Key, 3, 3, out var leased));

        // Another silo's write: the lease ends first, and its pending version comes back to the grain.
        var other = Cloud.Silos[1].SiloAddress.ToParsableString();
        var theirs = await p.Grain.NextTimestampAsync(5, 5, other).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(p.Leases.Holds(p.Key), "the lease outlived a timestamp handed to another silo");
        Assert.True(theirs.Timestamp > leased, "a timestamp after the lease was not above the lease's");
        Assert.Equal(2, (await p.Grain.GetControlAsync()).PendingWrites);

        // A read of the leased write's stripe waits for it, as for any acknowledged write.
        var read = p.Grain.AcquireAsync(
            new LockRequest(3, 3, LockMode.Shared, other, Length, WaitForPendingWrites: true));
        await Task.Delay(HeldOpen);
        Assert.False(read.IsCompleted, "a read did not wait for a version pending under the ended lease");
        await p.Leases.SettleAsync(p.Key, [leased]);
        var granted = await read.WaitAsync(TimeSpan.FromSeconds(10));
        await p.Grain.ReleaseAsync(granted.FencingToken);
        await p.Grain.SettleAsync([theirs.Timestamp]);
    }

    [Fact]
    public async Task AnotherSilosLock_WaitsForTheBatchUnderTheLease_AndSeesItsCommit()
    {
        var p = Partition();
        await TakeLeaseAsync(p);
        Assert.True(p.Leases.TryTimestamp(p.Key, 0, 0, out var ts));
        var locked = await p.Leases.TryLockForWriteAsync(p.Key, 0, 0, firstBlock: 0, blockCount: 4, [ts]);
        Assert.NotNull(locked);
        Assert.False(locked.Value.Grant.DiskCheckNeeded);

        // A writer of another silo asks for the stripe while the batch runs under the lease.
        var other = Cloud.Silos[1].SiloAddress.ToParsableString();
        var exclusive = p.Grain.AcquireAsync(new LockRequest(0, 0, LockMode.Exclusive, other, Length, false));
        await Task.Delay(HeldOpen);
        Assert.False(exclusive.IsCompleted, "an exclusive lock was granted beside a batch under a write lease");
        WriteLeases.Commit(locked.Value.Hold, [new BlockCommit(1, 2, ts)], [ts]);
        var granted = await exclusive.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([0L, ts, ts, 0L], (await p.Grain.GetTimestampsAsync(0, 4)).ToArray());
        Assert.Equal(0, (await p.Grain.GetControlAsync()).PendingWrites);
        await p.Grain.ReleaseAsync(granted.FencingToken);
    }

    [Fact]
    public async Task ABatchThatFailedUnderTheLease_LeavesItsStripesUncertain()
    {
        var p = Partition();
        await TakeLeaseAsync(p);
        Assert.True(p.Leases.TryTimestamp(p.Key, 2, 2, out var ts));
        var locked = await p.Leases.TryLockForWriteAsync(p.Key, 2, 2, firstBlock: 8, blockCount: 4, [ts]);
        WriteLeases.Release(locked!.Value.Hold);
        await p.Leases.SettleAsync(p.Key, [ts]);

        // The grain takes the partition back; a later writer of stripe 2 must check the disk, of stripe 5 need not.
        var other = Cloud.Silos[1].SiloAddress.ToParsableString();
        var t2 = await p.Grain.NextTimestampAsync(2, 2, other);
        var uncertain = await p.Grain.AcquireForWriteAsync(
            new LockRequest(2, 2, LockMode.Exclusive, other, Length, false), 8, 4, [t2.Timestamp]);
        Assert.True(uncertain.DiskCheckNeeded, "a stripe a failed batch under the lease may have written was trusted");
        await p.Grain.CommitAsync(uncertain.Grant.FencingToken, [], [t2.Timestamp], "x", release: true);
        var t3 = await p.Grain.NextTimestampAsync(5, 5, other);
        var certain = await p.Grain.AcquireForWriteAsync(
            new LockRequest(5, 5, LockMode.Exclusive, other, Length, false), 20, 4, [t3.Timestamp]);
        Assert.False(certain.DiskCheckNeeded);
        await p.Grain.CommitAsync(certain.Grant.FencingToken, [], [t3.Timestamp], "x", release: true);
    }

    [Fact]
    public async Task ANewActivation_EndsTheWriteLeaseOfTheOneBefore()
    {
        var p = Partition();
        await TakeLeaseAsync(p);
        Assert.True(p.Leases.TryTimestamp(p.Key, 0, 0, out var ts));
        await p.Leases.SettleAsync(p.Key, [ts]);

        await p.Grain.AsReference<IGrainManagementExtension>().DeactivateOnIdle();
        var next = await p.Grain.NextTimestampAsync(0, 0, p.Address).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(p.Leases.Holds(p.Key), "a write lease of the earlier activation survived the reactivation");
        Assert.True(next.Timestamp > ts);
        await p.Grain.SettleAsync([next.Timestamp]);
    }

    [Fact]
    public async Task ANewActivation_HoldsTheBatchUnderTheLease_WithoutWaitingForIt()
    {
        var p = Partition();
        await TakeLeaseAsync(p);
        Assert.True(p.Leases.TryTimestamp(p.Key, 4, 4, out var ts));
        var locked = await p.Leases.TryLockForWriteAsync(p.Key, 4, 4, firstBlock: 16, blockCount: 4, [ts]);
        Assert.NotNull(locked);

        // The grain's silo died (here: it is deactivated) while the batch runs. The new activation's reclaim must not
        // wait for the batch (its writes may hang on the dead silo), only keep its stripe locked until it ends.
        await p.Grain.AsReference<IGrainManagementExtension>().DeactivateOnIdle();
        var other = Cloud.Silos[1].SiloAddress.ToParsableString();
        var elsewhere = await p.Grain.AcquireAsync(new LockRequest(9, 9, LockMode.Exclusive, other, Length, false))
            .WaitAsync(TimeSpan.FromSeconds(3));
        await p.Grain.ReleaseAsync(elsewhere.FencingToken);
        var same = p.Grain.AcquireAsync(new LockRequest(4, 4, LockMode.Exclusive, other, Length, false));
        await Task.Delay(HeldOpen);
        Assert.False(same.IsCompleted, "a stripe a batch under the ended lease still writes was granted");
        WriteLeases.Commit(locked.Value.Hold, [new BlockCommit(16, 4, ts)], [ts]);
        var granted = await same.WaitAsync(TimeSpan.FromSeconds(10));
        await p.Grain.ReleaseAsync(granted.FencingToken);
    }

    [Fact]
    public async Task AGrantArrivingAfterItsLeaseEnded_IsRefused()
    {
        var leases = Cloud.Service<WriteLeases>(Cloud.Silos[0]);
        var key = $"{Guid.NewGuid():N}/0";
        // The grain ended lease 7 while the reply that gave it was still on its way.
        await leases.EndAsync(key, 7);
        Assert.False(leases.Add(key, new WriteLeaseGrant(7, 7, 100, DateTimeOffset.UtcNow + Length)));
        Assert.False(leases.TryTimestamp(key, 0, 0, out _));
        // Near its expiry (within a quarter of the silo's lock lease) a lease is not used: the write goes to the grain.
        var near = $"{Guid.NewGuid():N}/0";
        var lockLease = Cloud.Service<IOptions<CloudOptions>>(Cloud.Silos[0]).Value.LockLease;
        Assert.True(leases.Add(near, new WriteLeaseGrant(9, 9, 100, DateTimeOffset.UtcNow + lockLease / 8)));
        Assert.False(leases.TryTimestamp(near, 0, 0, out _));
        await leases.EndAsync(near, long.MaxValue);
    }

    [Fact]
    public async Task AnEndAskedAgain_GetsTheSameAnswer()
    {
        // The grain's first end call timed out while a batch under the lease ran, and it asks again.
        var leases = Cloud.Service<WriteLeases>(Cloud.Silos[0]);
        var key = $"{Guid.NewGuid():N}/0";
        Assert.True(leases.Add(key, new WriteLeaseGrant(40, 40, 100, DateTimeOffset.UtcNow + Length)));
        Assert.True(leases.TryTimestamp(key, 1, 2, out var ts));
        var first = await leases.EndAsync(key, 40);
        var again = await leases.EndAsync(key, 40);
        Assert.Equal([new HeldVersion(ts, 1, 2)], first.Pending.ToArray());
        Assert.Equal(first.Pending.ToArray(), again.Pending.ToArray());
    }

    [Fact]
    public async Task ASiloWritingAlone_WritesAndReadsUnderALease_AndAnotherSilosWriteIsSeenAfter()
    {
        var name = "wlease-" + Guid.NewGuid().ToString("N")[..6];
        await Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 16 << 10, false));
        var owner = Cloud.Silos[0];
        var other = Cloud.Silos[1];
        var leases = Cloud.Service<WriteLeases>(owner);
        try
        {
            // Every copy goes to the owner's worker, so that it is the partition's only writer.
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = owner.Name;
            var (timestamps, batches, reads) = (leases.LocalTimestamps, leases.LocalBatches, leases.LocalReads);
            byte[] last = [];
            await Eventually.TrueAsync(
                async () =>
                {
                    last = Blocks.Pattern(4096, seed: Random.Shared.Next());
                    await Cloud.FrontEnd(owner).WriteAsync(name, 8192, last, forceUnitAccess: false);
                    Assert.Equal(last, await Cloud.FrontEnd(owner).ReadAsync(name, 8192, 4096));
                    return leases.LocalTimestamps > timestamps && leases.LocalBatches > batches
                        && leases.LocalReads > reads;
                },
                "a write timestamped, locked and committed, and a read locked, under the owner's write lease");

            // Another silo reads, then writes the same block: the lease ends, and every silo sees the newest write.
            Assert.Equal(last, await Cloud.FrontEnd(other).ReadAsync(name, 8192, 4096));
            var theirs = Blocks.Pattern(4096, seed: 7);
            await Cloud.FrontEnd(other).WriteAsync(name, 8192, theirs, forceUnitAccess: true);
            Assert.Equal(theirs, await Cloud.FrontEnd(owner).ReadAsync(name, 8192, 4096));
            Assert.Equal(theirs, await Cloud.FrontEnd(other).ReadAsync(name, 8192, 4096));
            var scrub = await Cloud.Client.ScrubAsync(name, repair: false);
            Assert.Equal(0, scrub.Mismatches);
        }
        finally
        {
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = null;
        }
    }
}
