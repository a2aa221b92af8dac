using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

/// <summary>One silo whose RAID worker runs at most 8 batches of a volume at once, 12 when the rest are durable.</summary>
public sealed class NarrowSchedule : IAsyncLifetime
{
    public const int Plain = CloudOptions.MinConcurrentBatches;
    public const int Durable = Plain + 4;

    public CloudCluster Cloud { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Cloud = await CloudCluster.StartAsync(silos: 1, configure: o =>
        {
            o.MaxConcurrentBatches = Plain;
            o.MaxConcurrentDurableBatches = Durable;
        });

    public async Task DisposeAsync() => await Cloud.DisposeAsync();
}

/// <summary>
/// <c>Cloud:MaxConcurrentBatches</c> and <c>Cloud:MaxConcurrentDurableBatches</c> bound the batches of one volume a
/// RAID worker runs at once: with the slots taken by batches held behind a lock, a new copy of free stripes waits.
/// </summary>
public sealed class WriteSchedulerLimitTests(NarrowSchedule bed) : IClassFixture<NarrowSchedule>
{
    private static readonly TimeSpan HeldBack = TimeSpan.FromSeconds(2);

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private const long StripeBytes = 2L * (64 << 10);

    [Fact]
    public async Task EveryPlainSlotHeldBehindALock_ANewCopyOfFreeStripesWaitsUntilOneFinishes()
    {
        await using var held = await HoldAsync(NarrowSchedule.Plain);
        // Re-sent copies take the slots not kept for awaited ones, copies this silo's own clients wait for the rest.
        for (var s = 0; s < NarrowSchedule.Plain; s++)
            await held.AcceptAsync(s, redelegated: s < NarrowSchedule.Plain - WriteScheduler.ReservedAwaitedBatches, fua: false);
        var free = await held.AcceptAsync(NarrowSchedule.Durable + 4, redelegated: false, fua: false);
        await held.AssertHeldBackAsync(free, $"while {NarrowSchedule.Plain} batches (Cloud:MaxConcurrentBatches) wait behind a lock");

        await held.ReleaseAndCheckAsync();
    }

    [Fact]
    public async Task DurableCopies_RunPastThePlainLimit_UpToTheDurableOne()
    {
        await using var held = await HoldAsync(NarrowSchedule.Durable);
        for (var s = 0; s < NarrowSchedule.Plain; s++) await held.AcceptAsync(s, redelegated: false, fua: true);
        // Every plain slot is taken: a copy that needs no flush waits, a durable one starts.
        var plain = await held.AcceptAsync(NarrowSchedule.Durable + 2, redelegated: false, fua: false);
        await held.AssertHeldBackAsync(plain, $"while {NarrowSchedule.Plain} durable batches run (Cloud:MaxConcurrentBatches)");
        var durable = await held.AcceptAsync(NarrowSchedule.Durable + 4, redelegated: false, fua: true);
        Assert.Equal(WriteOutcome.Committed, (await held.Scheduler.WaitAsync(durable.WriteId, Bound)).Outcome);

        // Up to the durable limit, then durable copies wait too.
        for (var s = NarrowSchedule.Plain; s < NarrowSchedule.Durable; s++) await held.AcceptAsync(s, redelegated: false, fua: true);
        var beyond = await held.AcceptAsync(NarrowSchedule.Durable + 6, redelegated: false, fua: true);
        await held.AssertHeldBackAsync(beyond, $"while {NarrowSchedule.Durable} batches (Cloud:MaxConcurrentDurableBatches) wait behind a lock");

        await held.ReleaseAndCheckAsync();
    }

    /// <summary>A new volume whose first <paramref name="stripes"/> stripes the test holds locked.</summary>
    private async Task<HeldStripes> HoldAsync(int stripes)
    {
        var cloud = bed.Cloud;
        var v = await cloud.Client.CreateVolumeAsync(new VolumeSpec(
            "limit-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var silo = cloud.Silos[0];
        var lockGrain = cloud.Grains(silo).GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, 0));
        var address = silo.SiloAddress.ToParsableString();
        var gate = await lockGrain.AcquireAsync(new LockRequest(
            0, stripes - 1, LockMode.Exclusive, address, TimeSpan.FromMinutes(2), false));
        return new HeldStripes(cloud, v, lockGrain, address, gate.FencingToken);
    }

    private sealed class HeldStripes(
        CloudCluster cloud, VolumeInfo volume, IPartitionLockGrain lockGrain, string address, long token) : IAsyncDisposable
    {
        private readonly List<ReplicatedWrite> _accepted = [];
        private bool _released;

        public WriteScheduler Scheduler { get; } = cloud.Service<WriteScheduler>(cloud.Silos[0]);

        public async Task<ReplicatedWrite> AcceptAsync(long stripe, bool redelegated, bool fua)
        {
            var grant = await lockGrain.NextTimestampAsync(stripe, stripe, address);
            var copy = new ReplicatedWrite(
                Guid.NewGuid(), volume.Name, stripe * StripeBytes, Blocks.Pattern(4096, (int)stripe), grant.Timestamp, fua,
                cloud.Silos[0].Name, redelegated);
            await Scheduler.AcceptAsync(copy);
            _accepted.Add(copy);
            return copy;
        }

        public async Task AssertHeldBackAsync(ReplicatedWrite copy, string why)
        {
            var report = await Scheduler.WaitAsync(copy.WriteId, HeldBack);
            Assert.True(report.Outcome == WriteOutcome.Pending, $"a copy of free stripes is {report.Outcome} {why}");
        }

        /// <summary>Lets the held batches go; then every copy commits and reads back.</summary>
        public async Task ReleaseAndCheckAsync()
        {
            await lockGrain.ReleaseAsync(token);
            _released = true;
            foreach (var copy in _accepted)
            {
                Assert.Equal(WriteOutcome.Committed, (await Scheduler.WaitAsync(copy.WriteId, Bound)).Outcome);
                Assert.Equal(copy.Data, await cloud.FrontEnd(cloud.Silos[0]).ReadAsync(volume.Name, copy.OffsetBytes, 4096));
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_released) await lockGrain.ReleaseAsync(token);
        }
    }
}
