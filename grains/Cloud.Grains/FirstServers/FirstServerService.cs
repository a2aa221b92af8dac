using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.FirstServers;

/// <summary>
/// The first server as a local service of this silo: what <see cref="FirstServerGrain"/> does, callable
/// without an Orleans message by anything hosted in the silo (the NBD server). Writes go through
/// <see cref="FirstServerWrites"/> (whole blocks) and <see cref="SectorWrites"/> (a range that starts or ends inside
/// a block); reads take a shared lock (after every acknowledged earlier write of those stripes settled), or enter this
/// silo's read lease on a quiet partition (<see cref="ReadLeases"/>), and read through <see cref="LockedReads"/>
/// straight into the caller's buffer. Offsets and lengths are multiples of
/// <see cref="VolumeMath.SectorSizeBytes"/>.
/// </summary>
public sealed class FirstServerService(
    FirstServerWrites writes,
    SectorWrites sectorWrites,
    LockedReads lockedReads,
    VolumeDirectory directory,
    IGrainFactory grains,
    GrainReferences<IPartitionLockGrain> lockGrains,
    ILocalSiloDetails silo,
    IClusterMembershipService membership,
    VolumeWorkers workers,
    HeldLocks heldLocks,
    ReadLeases readLeases,
    WriteLeases writeLeases,
    IOptions<CloudOptions> options)
{
    private const int BlockBytes = VolumeMath.BlockSizeBytes;

    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>
    /// Writes sector-aligned data; see <see cref="IFirstServerGrain.WriteAsync"/>. <paramref name="data"/> must not
    /// change afterwards.
    /// </summary>
    /// <param name="recycle">
    /// The caller gave <paramref name="data"/> up entirely (no one else holds it): it goes to
    /// <see cref="Cloud.Storage.Volumes.PayloadPool.Shared"/> once committed; see
    /// <see cref="FirstServerWrites.WriteAsync"/>. A write that does not cover whole blocks copies its data and leaves
    /// the array to the garbage collector.
    /// </param>
    public async Task WriteAsync(
        string volumeName,
        long offsetBytes,
        byte[] data,
        bool forceUnitAccess,
        bool recycle = false)
    {
        var start = Stopwatch.GetTimestamp();
        if (VolumeMath.IsBlockAligned(offsetBytes, data.Length))
        {
            await writes.WriteAsync(volumeName, offsetBytes, data, forceUnitAccess, recycle).ConfigureAwait(false);
        }
        else
        {
            var v = await directory.GetAsync(volumeName).ConfigureAwait(false);
            VolumeMath.CheckSectorRange(v, offsetBytes, data.Length);
            CheckRequestBytes("write", data.Length);
            await sectorWrites.WriteAsync(v, offsetBytes, data, forceUnitAccess).ConfigureAwait(false);
        }
        CloudMetrics.RecordIo("write", data.Length, start);
    }

    /// <summary>
    /// Reads a sector-aligned range into <paramref name="destination"/>; sees every write acknowledged before the
    /// call. A range that does not cover whole blocks reads the enclosing blocks and returns its part of them.
    /// </summary>
    public async Task ReadAsync(string volumeName, long offsetBytes, Memory<byte> destination)
    {
        using var activity = CloudTracing.Source.StartActivity(CloudTracing.FirstServerRead);
        activity?.SetTag("cloud.volume", volumeName);
        activity?.SetTag("cloud.offset", offsetBytes);
        activity?.SetTag("cloud.bytes", destination.Length);
        activity?.SetTag("cloud.silo", silo.Name);
        var start = Stopwatch.GetTimestamp();
        var lengthBytes = destination.Length;
        var v = await directory.GetAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckSectorRange(v, offsetBytes, lengthBytes);
        CheckRequestBytes("read", lengthBytes);
        if (VolumeMath.IsBlockAligned(offsetBytes, lengthBytes))
        {
            await ReadBlocksAsync(v, offsetBytes, destination).ConfigureAwait(false);
        }
        else
        {
            var alignedStart = offsetBytes / BlockBytes * BlockBytes;
            var alignedEnd = (offsetBytes + lengthBytes + BlockBytes - 1) / BlockBytes * BlockBytes;
            var blocks = ArrayPool<byte>.Shared.Rent((int)(alignedEnd - alignedStart));
            try
            {
                await ReadBlocksAsync(v, alignedStart, blocks.AsMemory(0, (int)(alignedEnd - alignedStart)))
                    .ConfigureAwait(false);
                blocks.AsSpan((int)(offsetBytes - alignedStart), lengthBytes).CopyTo(destination.Span);
            }
            finally { ArrayPool<byte>.Shared.Return(blocks); }
        }
        CloudMetrics.RecordIo("read", lengthBytes, start);
    }

    private void CheckRequestBytes(string operation, int lengthBytes)
    {
        if (lengthBytes > _options.MaxRequestBytes)
            throw new CloudRequestException(
                $"{operation} of {lengthBytes} bytes exceeds the limit of {_options.MaxRequestBytes}; split it");
    }

    /// <summary>Reads a block-aligned range, one locked piece per partition.</summary>
    private async Task ReadBlocksAsync(VolumeInfo v, long offsetBytes, Memory<byte> destination)
    {
        var stripe = VolumeMath.StripeDataBytes(v);
        var partitionBytes = VolumeMath.StripesPerPartition(v, _options.PartitionTargetBytes) * stripe;
        var firstPartition = offsetBytes / partitionBytes;
        var end = offsetBytes + destination.Length;
        if ((end - 1) / partitionBytes == firstPartition)
        {
            // The common case (a request within one partition): no list, no WhenAll.
            await ReadPieceAsync(v, firstPartition, offsetBytes, destination).ConfigureAwait(false);
            return;
        }
        var pieces = new List<Task>();
        for (var offset = offsetBytes; offset < end;)
        {
            var partition = offset / partitionBytes;
            var pieceEnd = Math.Min(end, (partition + 1) * partitionBytes);
            pieces.Add(
                ReadPieceAsync(
                    v,
                    partition,
                    offset,
                    destination.Slice((int)(offset - offsetBytes), (int)(pieceEnd - offset))));
            offset = pieceEnd;
        }
        await Task.WhenAll(pieces).ConfigureAwait(false);
    }

    private async Task ReadPieceAsync(VolumeInfo v, long partition, long offset, Memory<byte> destination)
    {
        var stripe = VolumeMath.StripeDataBytes(v);
        var partitionKey = VolumeMath.PartitionKey(v, partition);
        if (_options.ReadLeases && readLeases.TryEnter(partitionKey, _options.LockLease, out var lease))
        {
            // Under this silo's read lease: nothing of the partition is pending or locked for writing, and the lock
            // grain ends the lease (waiting for this read) before it lets any writer in.
            try
            {
                await lockedReads.ReadAsync(v, offset, destination).ConfigureAwait(false);
            }
            finally
            {
                ReadLeases.Exit(lease!);
            }
            return;
        }
        var firstStripe = offset / stripe;
        var lastStripe = (offset + destination.Length - 1) / stripe;
        if (_options.WriteLeases && writeLeases.Holds(partitionKey)
            && await writeLeases.TryEnterReadAsync(partitionKey, firstStripe, lastStripe).ConfigureAwait(false)
                is { } hold)
        {
            // Under this silo's write lease: every write of the partition is this silo's own, so the read waits for
            // the earlier ones and locks its stripes here, as the grain would.
            try
            {
                await lockedReads.ReadAsync(v, offset, destination).ConfigureAwait(false);
            }
            finally
            {
                WriteLeases.Release(hold);
            }
            return;
        }
        var lockGrain = lockGrains.Get(partitionKey);
        var request = new LockRequest(
            firstStripe,
            lastStripe,
            LockMode.Shared,
            _siloAddress,
            _options.LockLease,
            WaitForPendingWrites: true,
            WantReadLease: _options.ReadLeases);
        // The partition-lock grain may be on a silo that just died: ask again (as a writer does for its timestamp)
        // rather than fail the read.
        var grant = await heldLocks.AcquireThroughSiloLossAsync(lockGrain, request, _options.RedelegationTimeout)
            .ConfigureAwait(false);
        if (grant.ReadLeaseExpiresUtc is { } leaseEnds) readLeases.Add(partitionKey, grant.FencingToken, leaseEnds);
        try
        {
            await lockedReads.ReadAsync(v, offset, destination).ConfigureAwait(false);
        }
        finally
        {
            // One-way: the read's reply need not wait for the release's; a lost release ends with the lease.
            await heldLocks.ReleaseOneWayAsync(lockGrain, grant.FencingToken).ConfigureAwait(false);
        }
    }

    /// <summary>Returns once every write acknowledged before the call is durable on every silo.</summary>
    public async Task FlushAsync(string volumeName)
    {
        var start = Stopwatch.GetTimestamp();
        var v = await directory.GetAsync(volumeName).ConfigureAwait(false);
        await writes.DrainAsync(volumeName).ConfigureAwait(false);
        var flushes = new List<Task>();
        foreach (var m in membership.CurrentSnapshot.Members.Values)
            if (m.Status == SiloStatus.Active)
                flushes.Add(FlushOnAsync(m.SiloAddress, m.Name, volumeName));
        await Task.WhenAll(flushes).ConfigureAwait(false);
        await FlushForTheDeadAsync(v).ConfigureAwait(false);
        CloudMetrics.RecordIo("flush", 0, start);
    }

    /// <summary>
    /// The silos declared dead that this silo's flushes of a volume (by volume id) already covered with
    /// <see cref="FlushForTheDeadAsync"/>.
    /// </summary>
    private readonly ConcurrentDictionary<Guid, ImmutableHashSet<SiloAddress>> _deathsCovered = new();

    /// <summary>
    /// A silo that died is not asked to flush (above), but what it committed before its death may still be in the
    /// kernel's cache of the member files (a killed process's writes are kept and written back later; a power loss
    /// first loses them), or reach the disks only with its intent slot's recovery, which may not have run yet. So when
    /// the cluster lists a death this silo's flushes of the volume have not covered, a silo that reaches the volume
    /// (this one, or a live silo of the volume's host) opens it if need be and flushes every member, which makes any
    /// process's completed writes to them durable. Once per death and volume on each silo; a volume whose host has
    /// no live silo fails the flush after the redelegation timeout, naming the host.
    /// </summary>
    private async Task FlushForTheDeadAsync(VolumeInfo v)
    {
        var dead = membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Dead)
            .Select(m => m.SiloAddress)
            .ToImmutableHashSet();
        if (dead.IsEmpty) return;
        if (_deathsCovered.TryGetValue(v.VolumeId, out var covered) && dead.IsSubsetOf(covered)) return;
        await workers.CallAsync(v, w => w.FlushEveryMemberAsync(v.Name)).ConfigureAwait(false);
        _deathsCovered.AddOrUpdate(v.VolumeId, dead, (_, old) => old.Union(dead));
    }

    /// <summary>
    /// Flushes the volume on one silo. A silo that has just died is still listed active until the cluster declares
    /// it dead, and calls to it fail meanwhile: they are asked again (within <see cref="CloudOptions.RedelegationTimeout"/>)
    /// until the silo answers or is declared dead. A silo declared dead is skipped, here as by the loop above once the
    /// declaration is in: the copies it had not committed are redelegated by their first servers (drained above), and
    /// what it did commit went to the members through the kernel (which keeps a killed process's writes) or to page
    /// blobs (durable once written), which <see cref="FlushForTheDeadAsync"/> then makes durable.
    /// </summary>
    private async Task FlushOnAsync(SiloAddress address, string name, string volumeName)
    {
        try
        {
            await SiloFailures.RetryAsync(
                () => grains.GetGrain<IRaidWorkerGrain>(name).FlushAsync(volumeName),
                _options.RedelegationTimeout,
                ex => SiloFailures.IsSiloFailure(ex) && IsActive(address)).ConfigureAwait(false);
        }
        catch (Exception ex) when (SiloFailures.IsSiloFailure(ex) && !IsActive(address))
        {
            // Declared dead meanwhile: nothing of it left to flush.
        }
    }

    private bool IsActive(SiloAddress address) =>
        membership.CurrentSnapshot.GetSiloStatus(address) == SiloStatus.Active;

    /// <summary>
    /// Discards a sector-aligned range (reads return zeroes): whole blocks are trimmed, and the sectors of a block it
    /// covers only in part are written with zeroes (read-modify-write, like any sub-block write).
    /// </summary>
    public async Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes)
    {
        var v = await directory.GetAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckSectorRange(v, offsetBytes, lengthBytes);
        var start = Stopwatch.GetTimestamp();
        var end = offsetBytes + lengthBytes;
        var wholeStart = (offsetBytes + BlockBytes - 1) / BlockBytes * BlockBytes;
        var wholeEnd = end / BlockBytes * BlockBytes;
        var work = new List<Task>(3);
        if (wholeEnd > wholeStart)
        {
            work.Add(workers.CallAsync(v, w => w.TrimAsync(volumeName, wholeStart, wholeEnd - wholeStart)));
            if (offsetBytes < wholeStart) work.Add(ZeroSectorsAsync(v, offsetBytes, wholeStart - offsetBytes));
            if (wholeEnd < end) work.Add(ZeroSectorsAsync(v, wholeEnd, end - wholeEnd));
        }
        else
        {
            // Inside one block, or across one block boundary with no whole block between.
            work.Add(ZeroSectorsAsync(v, offsetBytes, lengthBytes));
        }
        await Task.WhenAll(work).ConfigureAwait(false);
        CloudMetrics.RecordIo("trim", 0, start);
    }

    private Task ZeroSectorsAsync(VolumeInfo v, long offsetBytes, long lengthBytes) =>
        sectorWrites.WriteAsync(v, offsetBytes, new byte[lengthBytes], forceUnitAccess: false);
}
