using Cloud.Grains.Locks;

namespace Cloud.Grains.Tests;

/// <summary>
/// The partition-lock grain's semantics, pinned in the in-process cluster (issue 13, item 4): shared with shared,
/// FIFO among conflicting waiters on a stripe, no overtaking of a waiting exclusive request by later shared ones,
/// and a holder's lease ending while others wait. Each step waits for the grain to report the request as held or
/// waiting (its control object) before the next one is sent, so the order of arrival is the order of the test.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class PartitionLockTests(SharedClusterFixture fixture)
{
    /// <summary>A lease no step of these tests comes near, so that only the lease test sees one end.</summary>
    private static readonly TimeSpan LongLease = TimeSpan.FromMinutes(2);

    /// <summary>Bound on a grant that is due; a grant that takes longer has failed.</summary>
    private static readonly TimeSpan GrantTimeout = TimeSpan.FromSeconds(20);

    private CloudCluster Cloud => fixture.Cloud;

    /// <summary>A live silo as holder, so that the grain's check for dead holders never ends these leases.</summary>
    private string Holder => Cloud.Silos[1].SiloAddress.ToParsableString();

    /// <summary>A partition of its own for each test: the key need not name a volume.</summary>
    private IPartitionLockGrain NewPartition() =>
        Cloud.Grains(Cloud.Silos[0]).GetGrain<IPartitionLockGrain>($"{Guid.NewGuid():N}/0");

    private LockRequest Request(long first, long last, LockMode mode, TimeSpan? lease = null) =>
        new(first, last, mode, Holder, lease ?? LongLease, WaitForPendingWrites: false);

    /// <summary>Waits until the grain counts <paramref name="requests"/> requests (held or waiting), and returns its control object.</summary>
    private static Task<PartitionControl> ArrivedAsync(IPartitionLockGrain lockGrain, int requests) =>
        Eventually.ValueAsync(lockGrain.GetControlAsync, c => c.Holders + c.Waiters >= requests, GrantTimeout,
            TimeSpan.FromMilliseconds(10), c => $"the grain counts {c.Holders} holders and {c.Waiters} waiters, not {requests} requests");

    /// <summary>Asserts how many requests the grain holds and how many wait.</summary>
    private static async Task AssertCountsAsync(IPartitionLockGrain lockGrain, int holders, int waiters)
    {
        var control = await lockGrain.GetControlAsync();
        Assert.Equal((holders, waiters), (control.Holders, control.Waiters));
    }

    [Fact]
    public async Task SharedRequests_AreGrantedTogether_AndAnExclusiveRequestWaitsForEveryOne()
    {
        var lockGrain = NewPartition();
        var first = await lockGrain.AcquireAsync(Request(0, 1, LockMode.Shared)).WaitAsync(GrantTimeout);
        var second = await lockGrain.AcquireAsync(Request(1, 2, LockMode.Shared)).WaitAsync(GrantTimeout);
        await AssertCountsAsync(lockGrain, holders: 2, waiters: 0);

        var exclusive = lockGrain.AcquireAsync(Request(1, 1, LockMode.Exclusive));
        var control = await ArrivedAsync(lockGrain, 3);
        Assert.Equal((2, 1), (control.Holders, control.Waiters));

        await lockGrain.ReleaseAsync(first.FencingToken);
        await AssertCountsAsync(lockGrain, holders: 1, waiters: 1);
        Assert.False(exclusive.IsCompleted, "the exclusive request was granted while a shared holder of its stripe remained");

        await lockGrain.ReleaseAsync(second.FencingToken);
        var granted = await exclusive.WaitAsync(GrantTimeout);
        Assert.Equal(LockMode.Exclusive, granted.Mode);
        Assert.True(granted.FencingToken > second.FencingToken, "a later grant carries an older fencing token");
        await lockGrain.ReleaseAsync(granted.FencingToken);
        await AssertCountsAsync(lockGrain, holders: 0, waiters: 0);
    }

    [Fact]
    public async Task ConflictingWaitersOnAStripe_AreGrantedInArrivalOrder_WhileOtherStripesAreNotHeldUp()
    {
        var lockGrain = NewPartition();
        var holder = await lockGrain.AcquireAsync(Request(0, 0, LockMode.Exclusive)).WaitAsync(GrantTimeout);

        // Three conflicting requests on stripe 0, sent one after the other once the previous one waits.
        var waiters = new List<Task<LockGrant>>();
        foreach (var (first, last, mode) in new[] { (0L, 1L, LockMode.Exclusive), (0L, 0L, LockMode.Shared), (0L, 0L, LockMode.Exclusive) })
        {
            waiters.Add(lockGrain.AcquireAsync(Request(first, last, mode)));
            await ArrivedAsync(lockGrain, 1 + waiters.Count);
        }
        await AssertCountsAsync(lockGrain, holders: 1, waiters: 3);

        // A request on a stripe no one holds or waits for is granted at once: FIFO is per stripe, not per partition.
        var elsewhere = await lockGrain.AcquireAsync(Request(5, 5, LockMode.Exclusive)).WaitAsync(GrantTimeout);
        await lockGrain.ReleaseAsync(elsewhere.FencingToken);

        // Each release grants exactly the next waiter in arrival order, and nothing behind it.
        var previous = holder;
        for (var i = 0; i < waiters.Count; i++)
        {
            await lockGrain.ReleaseAsync(previous.FencingToken);
            previous = await waiters[i].WaitAsync(GrantTimeout);
            await AssertCountsAsync(lockGrain, holders: 1, waiters: waiters.Count - 1 - i);
            for (var later = i + 1; later < waiters.Count; later++)
                Assert.False(waiters[later].IsCompleted, $"waiter {later} was granted together with waiter {i}, ahead of its turn");
        }
        await lockGrain.ReleaseAsync(previous.FencingToken);
    }

    [Fact]
    public async Task LaterSharedRequests_DoNotOvertakeAWaitingExclusiveRequest()
    {
        var lockGrain = NewPartition();
        var reader = await lockGrain.AcquireAsync(Request(0, 3, LockMode.Shared)).WaitAsync(GrantTimeout);
        var writer = lockGrain.AcquireAsync(Request(2, 2, LockMode.Exclusive));
        await ArrivedAsync(lockGrain, 2);

        // These readers are compatible with the reader that holds the stripes, but a writer waits for stripe 2 before
        // them: granting them would let a stream of readers starve the writer.
        var lateReader = lockGrain.AcquireAsync(Request(2, 2, LockMode.Shared));
        await ArrivedAsync(lockGrain, 3);
        var wideReader = lockGrain.AcquireAsync(Request(0, 3, LockMode.Shared));
        var control = await ArrivedAsync(lockGrain, 4);
        Assert.Equal((1, 3), (control.Holders, control.Waiters));

        // A reader of a stripe the writer does not wait for is not held up.
        var otherReader = await lockGrain.AcquireAsync(Request(0, 1, LockMode.Shared)).WaitAsync(GrantTimeout);
        await lockGrain.ReleaseAsync(otherReader.FencingToken);

        await lockGrain.ReleaseAsync(reader.FencingToken);
        var written = await writer.WaitAsync(GrantTimeout);
        await AssertCountsAsync(lockGrain, holders: 1, waiters: 2);
        Assert.False(lateReader.IsCompleted || wideReader.IsCompleted, "a reader was granted together with the writer");

        // Once the writer is done, both readers hold the stripes together.
        await lockGrain.ReleaseAsync(written.FencingToken);
        var late = await lateReader.WaitAsync(GrantTimeout);
        var wide = await wideReader.WaitAsync(GrantTimeout);
        await AssertCountsAsync(lockGrain, holders: 2, waiters: 0);
        await lockGrain.ReleaseAsync(late.FencingToken);
        await lockGrain.ReleaseAsync(wide.FencingToken);
    }

    [Fact]
    public async Task HolderWhoseLeaseEndsWhileOthersWait_IsFenced_AndTheWaiterGetsAWholeLease()
    {
        var lockGrain = NewPartition();
        var holderLease = TimeSpan.FromSeconds(2);
        var waiterLease = TimeSpan.FromSeconds(3);
        var holder = await lockGrain.AcquireAsync(Request(0, 0, LockMode.Exclusive, holderLease)).WaitAsync(GrantTimeout);
        var waiter = lockGrain.AcquireAsync(Request(0, 0, LockMode.Exclusive, waiterLease));
        await ArrivedAsync(lockGrain, 2);

        // The holder never releases: only the end of its lease lets the waiter in.
        var granted = await waiter.WaitAsync(GrantTimeout);
        await AssertCountsAsync(lockGrain, holders: 1, waiters: 0);

        // The waiter's lease runs from its grant, when the holder's had ended, not from its request, sent before.
        Assert.True(granted.ExpiresUtc >= holder.ExpiresUtc + waiterLease,
            $"the waiter's lease ends at {granted.ExpiresUtc:O}, less than {waiterLease} after the holder's ended at {holder.ExpiresUtc:O}");

        // The old holder may not write, renew or commit any more; the new one may write.
        await Assert.ThrowsAsync<LockFencedException>(() => lockGrain.ValidateAsync(holder.FencingToken, 0, 1, [1]));
        await Assert.ThrowsAsync<LockFencedException>(() => lockGrain.RenewAsync(holder.FencingToken, LongLease));
        await Assert.ThrowsAsync<LockFencedException>(() => lockGrain.CommitAsync(holder.FencingToken, [], [], "test", release: true));
        await lockGrain.RenewAsync(granted.FencingToken, LongLease);
        await lockGrain.ValidateAsync(granted.FencingToken, 0, 1, [1]);
        await lockGrain.ReleaseAsync(granted.FencingToken);
        await AssertCountsAsync(lockGrain, holders: 0, waiters: 0);
    }
}
