using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.FirstServers;

/// <summary>
/// Writes of 512-byte sectors that do not cover whole 4 KiB blocks. The engine's unit stays the block (each has its
/// own checksum and timestamp on disk), so each partly covered block, at most two per write (the head and the tail),
/// is read, patched and delegated whole; the whole blocks between them go the normal way.
/// </summary>
/// <remarks>
/// <para>
/// An edge block first takes its write's timestamp T (which registers T as pending on the stripe), then a lock on
/// the stripe that waits for every pending version below T (<see cref="LockRequest.PendingBelow"/>). Once granted,
/// every older version of the block is on disk or was dropped for a newer one, so the read sees it and the patched
/// block carries it in the sectors this write leaves alone. A concurrent version above T wins the whole block when
/// the RAID worker compares timestamps: a legal order for two overlapping writes. Two sub-block writes to one block
/// serialize on the pending wait: the later one reads only after the earlier one's version settled.
/// </para>
/// <para>
/// The lock is shared, not exclusive: it only has to keep every writer of the stripe from being between its data
/// and parity writes while the block is read; the order comes from the pending wait, which is the same for either
/// mode. A shared lock also lets readers of the stripe through, and its release leaves the stripe certain, where an
/// exclusive holder released without a commit makes later writers of the stripe read the block timestamps on disk.
/// </para>
/// </remarks>
public sealed class SectorWrites(
    FirstServerWrites writes,
    LockedReads reads,
    HeldLocks heldLocks,
    GrainReferences<IPartitionLockGrain> lockGrains,
    ILocalSiloDetails silo,
    VersionsInFlight inFlight,
    IOptions<CloudOptions> options)
{
    private const int BlockBytes = VolumeMath.BlockSizeBytes;

    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>
    /// Writes a sector-aligned range (already checked against the volume) that starts or ends inside a block; returns
    /// as <see cref="FirstServerWrites.WriteAsync"/> does: once replicated, or committed for FUA and durable volumes.
    /// </summary>
    public async Task WriteAsync(VolumeInfo v, long offsetBytes, ReadOnlyMemory<byte> data, bool forceUnitAccess)
    {
        var waitForDisk = forceUnitAccess || v.Durable;
        var end = offsetBytes + data.Length;
        var firstBlock = offsetBytes / BlockBytes * BlockBytes;
        var lastBlock = (end - 1) / BlockBytes * BlockBytes;
        var headPartial = offsetBytes != firstBlock || end < firstBlock + BlockBytes;
        var tailPartial = lastBlock != firstBlock && end != lastBlock + BlockBytes;
        var middleStart = headPartial ? firstBlock + BlockBytes : firstBlock;
        var middleEnd = tailPartial ? lastBlock : end;

        var edges = new List<Task<Task<WriteReport>>>(2);
        if (headPartial)
        {
            var headEnd = Math.Min(end, firstBlock + BlockBytes);
            edges.Add(WriteEdgeAsync(v, firstBlock, offsetBytes, data[..(int)(headEnd - offsetBytes)], waitForDisk));
        }
        if (tailPartial)
            edges.Add(WriteEdgeAsync(v, lastBlock, lastBlock, data[(int)(lastBlock - offsetBytes)..], waitForDisk));
        var middle = middleEnd > middleStart
            ? writes.WriteAsync(
                v.Name,
                middleStart,
                data.Slice((int)(middleStart - offsetBytes), (int)(middleEnd - middleStart)).ToArray(),
                forceUnitAccess)
            : Task.CompletedTask;
        var edgesDelegated = Task.WhenAll(edges);
        await Task.WhenAll(middle, edgesDelegated).ConfigureAwait(false);
        if (!waitForDisk) return;
        foreach (var report in await Task.WhenAll(await edgesDelegated.ConfigureAwait(false)).ConfigureAwait(false))
        {
            if (report.Outcome == WriteOutcome.Failed)
                throw new CloudRequestException(
                    $"write to volume '{v.Name}' failed on silo {report.Silo}: {report.Error}");
        }
    }

    /// <summary>
    /// Reads the block at <paramref name="blockOffset"/> after every older version of it, patches
    /// <paramref name="sectors"/> in at <paramref name="offsetBytes"/>, and delegates the whole block under the
    /// timestamp taken first. Returns the copy's completion.
    /// </summary>
    private async Task<Task<WriteReport>> WriteEdgeAsync(
        VolumeInfo v,
        long blockOffset,
        long offsetBytes,
        ReadOnlyMemory<byte> sectors,
        bool fua)
    {
        var stripe = blockOffset / VolumeMath.StripeDataBytes(v);
        var partition = stripe / VolumeMath.StripesPerPartition(v, _options.PartitionTargetBytes);
        var partitionKey = VolumeMath.PartitionKey(v, partition);
        var lockGrain = lockGrains.Get(partitionKey);
        var timestamp = await SiloFailures.RetryAsync(
            () => lockGrain.NextTimestampAsync(stripe, stripe, _siloAddress),
            _options.RedelegationTimeout).ConfigureAwait(false);
        // This silo's until the delegation below ends it, or the settle here.
        inFlight.Begin(partitionKey, timestamp.Timestamp);
        var block = new byte[BlockBytes];
        try
        {
            var grant = await heldLocks.AcquireThroughSiloLossAsync(
                lockGrain,
                new LockRequest(
                    stripe,
                    stripe,
                    LockMode.Shared,
                    _siloAddress,
                    _options.LockLease,
                    WaitForPendingWrites: true,
                    PendingBelow: timestamp.Timestamp),
                _options.RedelegationTimeout)
                .ConfigureAwait(false);
            try
            {
                await reads.ReadAsync(v, blockOffset, block).ConfigureAwait(false);
            }
            finally
            {
                await heldLocks.ReleaseOneWayAsync(lockGrain, grant.FencingToken).ConfigureAwait(false);
            }
        }
        catch
        {
            // Nothing was delegated under the timestamp: it must not keep readers and later writers of the block
            // waiting until the lock grain gives it up.
            try { await lockGrain.SettleAsync([timestamp.Timestamp]).ConfigureAwait(false); }
            finally { inFlight.End(partitionKey, timestamp.Timestamp); }
            throw;
        }
        sectors.CopyTo(block.AsMemory((int)(offsetBytes - blockOffset)));
        return await writes.DelegateTimestampedAsync(v, partition, blockOffset, block, fua, timestamp)
            .ConfigureAwait(false);
    }
}
