using Cloud.Grains.Abstractions;
using Cloud.Grains.FirstServers;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Orleans.Core.Internal;

namespace Cloud.Grains.Tests;

/// <summary>
/// Read leases (<see cref="ReadLeases"/>): a silo reads a quiet partition without calling its lock grain, and the grain
/// ends the lease, after the reads under it, before it hands out a timestamp or an exclusive lock of that partition, and
/// when a new activation of it reclaims the partition.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class ReadLeaseTests(SharedClusterFixture fixture)
{
    /// <summary>How long a call that must wait for a read under a lease is watched for completing too early.</summary>
    private static readonly TimeSpan HeldOpen = TimeSpan.FromMilliseconds(500);

    private CloudCluster Cloud => fixture.Cloud;

    private (IPartitionLockGrain Grain, string Key, ReadLeases Leases, string Address) Partition(int silo = 0)
    {
        var key = $"{Guid.NewGuid():N}/0";
        var s = Cloud.Silos[silo];
        return (Cloud.Grains(s).GetGrain<IPartitionLockGrain>(key), key, Cloud.Service<ReadLeases>(s),
            s.SiloAddress.ToParsableString());
    }

    private static LockRequest SharedRead(string address) =>
        new(0, 0, LockMode.Shared, address, TimeSpan.FromSeconds(10), WaitForPendingWrites: true, WantReadLease: true);

    /// <summary>Takes a lease the way the first server does: a shared read that asks for one, then its release.</summary>
    private static async Task<LockGrant> TakeLeaseAsync(
        (IPartitionLockGrain Grain, string Key, ReadLeases Leases, string Address) p)
    {
        var grant = await p.Grain.AcquireAsync(SharedRead(p.Address));
        if (grant.ReadLeaseExpiresUtc is { } ends) p.Leases.Add(p.Key, grant.FencingToken, ends);
        await p.Grain.ReleaseAsync(grant.FencingToken);
        return grant;
    }

    [Fact]
    public async Task ATimestamp_EndsTheLeaseFirst_AfterTheReadsUnderIt()
    {
        var p = Partition();
        var grant = await TakeLeaseAsync(p);
        Assert.NotNull(grant.ReadLeaseExpiresUtc);
        Assert.True(p.Leases.TryEnter(p.Key, TimeSpan.FromSeconds(10), out var lease), "no lease after a quiet read");

        // A read is running under the lease: the timestamp (a write about to be acknowledged) must wait for it.
        var timestamp = p.Grain.NextTimestampAsync(0, 0, p.Address);
        await Task.Delay(HeldOpen);
        Assert.False(timestamp.IsCompleted, "a timestamp was handed out while a read under a lease was running");
        ReadLeases.Exit(lease!);
        await timestamp.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(p.Leases.TryEnter(p.Key, TimeSpan.FromSeconds(10), out _), "the lease outlived a timestamp");
    }

    [Fact]
    public async Task AnExclusiveLock_EndsTheLeaseFirst_AfterTheReadsUnderIt()
    {
        var p = Partition();
        await TakeLeaseAsync(p);
        Assert.True(p.Leases.TryEnter(p.Key, TimeSpan.FromSeconds(10), out var lease));
        // Another silo's writer asks for the stripe.
        var other = Cloud.Silos[1].SiloAddress.ToParsableString();
        var exclusive = p.Grain.AcquireAsync(
            new LockRequest(0, 0, LockMode.Exclusive, other, TimeSpan.FromSeconds(10), false));
        await Task.Delay(HeldOpen);
        Assert.False(exclusive.IsCompleted, "an exclusive lock was granted beside a read under a lease");
        ReadLeases.Exit(lease!);
        var granted = await exclusive.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(p.Leases.TryEnter(p.Key, TimeSpan.FromSeconds(10), out _));
        await p.Grain.ReleaseAsync(granted.FencingToken);
    }

    [Fact]
    public async Task NoLease_WhileAVersionIsPending_OrAWriterHoldsAStripe()
    {
        var p = Partition();
        var pending = await p.Grain.NextTimestampAsync(5, 5, p.Address);
        // A read of another stripe is granted at once, but the partition has a version in flight: no lease.
        var read = await p.Grain.AcquireAsync(SharedRead(p.Address));
        Assert.Null(read.ReadLeaseExpiresUtc);
        await p.Grain.ReleaseAsync(read.FencingToken);
        await p.Grain.SettleAsync([pending.Timestamp]);

        var writer = await p.Grain.AcquireAsync(
            new LockRequest(7, 7, LockMode.Exclusive, p.Address, TimeSpan.FromSeconds(10), false));
        read = await p.Grain.AcquireAsync(SharedRead(p.Address));
        Assert.Null(read.ReadLeaseExpiresUtc);
        await p.Grain.ReleaseAsync(read.FencingToken);
        await p.Grain.ReleaseAsync(writer.FencingToken);

        // Quiet again: the next read gets one.
        read = await p.Grain.AcquireAsync(SharedRead(p.Address));
        Assert.NotNull(read.ReadLeaseExpiresUtc);
        await p.Grain.ReleaseAsync(read.FencingToken);
    }

    [Fact]
    public async Task ANewActivation_EndsTheLeasesOfTheOneBefore()
    {
        var p = Partition();
        await TakeLeaseAsync(p);
        Assert.True(p.Leases.TryEnter(p.Key, TimeSpan.FromSeconds(10), out var lease));
        ReadLeases.Exit(lease!);

        // The grain goes away (its silo died, or it was collected) and comes back knowing no lease: its reclaim must
        // end the one this silo holds before it hands out anything.
        await p.Grain.AsReference<IGrainManagementExtension>().DeactivateOnIdle();
        await p.Grain.NextTimestampAsync(0, 0, p.Address).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(
            p.Leases.TryEnter(p.Key, TimeSpan.FromSeconds(10), out _),
            "a lease of the earlier activation survived the grain's reactivation");
    }

    [Fact]
    public void AGrantArrivingAfterItsLeaseEnded_IsRefused()
    {
        var leases = new ReadLeases(TimeProvider.System);
        var ends = DateTimeOffset.UtcNow.AddSeconds(10);
        // The grain ended lease 7 while the reply that gave it was still on its way.
        _ = leases.RevokeAsync("v/0", 7);
        leases.Add("v/0", 7, ends);
        Assert.False(leases.TryEnter("v/0", TimeSpan.FromSeconds(10), out _));
        // A later grant is a new lease.
        leases.Add("v/0", 9, ends);
        Assert.True(leases.TryEnter("v/0", TimeSpan.FromSeconds(10), out var lease));
        ReadLeases.Exit(lease!);
        // Near its expiry a lease is not used: the read goes to the grain, which may give a new one.
        leases.Add("v/1", 11, DateTimeOffset.UtcNow.AddSeconds(2));
        Assert.False(leases.TryEnter("v/1", TimeSpan.FromSeconds(10), out _));
    }

    [Fact]
    public async Task ReadsOfAQuietPartition_AreServedUnderALease_AndAWriteThroughAnotherSiloIsSeenAtOnce()
    {
        var name = "lease-" + Guid.NewGuid().ToString("N")[..6];
        await Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 16 << 10, false));
        var reader = Cloud.Silos[0];
        var writer = Cloud.Silos[1];
        var target = Cloud.Silos[2];
        var leases = Cloud.Service<ReadLeases>(reader);
        try
        {
            // Every copy goes to a third silo, so that a write is acknowledged once replicated, before its disk write.
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = target.Name;
            var first = Blocks.Pattern(4096, seed: 1);
            await Cloud.FrontEnd(writer).WriteAsync(name, 0, first, forceUnitAccess: true);
            var before = leases.LeasedReads;
            await Eventually.TrueAsync(
                async () =>
                {
                    Assert.Equal(first, await Cloud.FrontEnd(reader).ReadAsync(name, 0, 4096));
                    return leases.LeasedReads > before;
                },
                "a read served under the reader's lease");

            // The target's disk is slow: a read under a lease that was not ended would read the old block from disk.
            Cloud.Service<SiloRuntimeSettings>(target).InjectedDiskLatency = TimeSpan.FromSeconds(2);
            var second = Blocks.Pattern(4096, seed: 2);
            await Cloud.FrontEnd(writer).WriteAsync(name, 0, second, forceUnitAccess: false);
            Assert.True(
                Cloud.Service<FirstServerWrites>(writer).HeldCopies > 0,
                "the write was not acknowledged before its disk write, so this test shows nothing");
            Assert.Equal(second, await Cloud.FrontEnd(reader).ReadAsync(name, 0, 4096));
        }
        finally
        {
            Cloud.Service<SiloRuntimeSettings>(target).InjectedDiskLatency = TimeSpan.Zero;
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = null;
        }
    }
}
