using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
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
/// <see cref="FirstServerWrites"/>; reads take a shared lock (after every acknowledged earlier write of those stripes
/// settled) and read from this silo's RAID worker straight into the caller's buffer.
/// </summary>
/// <remarks>
/// The RAID worker of a read is this silo's own whenever this silo reaches the volume's members, so the read calls
/// its <see cref="OpenVolumeCache"/> directly: a grain call would only add a scheduler hop and a copy of the data,
/// and change nothing about the partition locks that give the read its linearizability. A silo that does not reach
/// them (its members are another host's files) reads through an eligible silo's RAID worker, under the same lock.
/// </remarks>
public sealed class FirstServerService(
    FirstServerWrites writes,
    OpenVolumeCache worker,
    VolumeDirectory directory,
    IGrainFactory grains,
    ILocalSiloDetails silo,
    IClusterMembershipService membership,
    VolumeReach reach,
    HeldLocks heldLocks,
    IOptions<CloudOptions> options)
{
    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    /// <summary>
    /// Writes block-aligned data; see <see cref="IFirstServerGrain.WriteAsync"/>. <paramref name="data"/> must not
    /// change afterwards.
    /// </summary>
    /// <param name="recycle">
    /// The caller gave <paramref name="data"/> up entirely (no one else holds it): it goes to
    /// <see cref="Cloud.Storage.Volumes.PayloadPool.Shared"/> once committed; see
    /// <see cref="FirstServerWrites.WriteAsync"/>.
    /// </param>
    public async Task WriteAsync(
        string volumeName,
        long offsetBytes,
        byte[] data,
        bool forceUnitAccess,
        bool recycle = false)
    {
        var start = Stopwatch.GetTimestamp();
        await writes.WriteAsync(volumeName, offsetBytes, data, forceUnitAccess, recycle).ConfigureAwait(false);
        CloudMetrics.RecordIo("write", data.Length, start);
    }

    /// <summary>
    /// Reads a block-aligned range into <paramref name="destination"/>; sees every write acknowledged before the call.
    /// </summary>
    public async Task ReadAsync(string volumeName, long offsetBytes, Memory<byte> destination)
    {
        var start = Stopwatch.GetTimestamp();
        var lengthBytes = destination.Length;
        var v = await directory.GetAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v, offsetBytes, lengthBytes);
        if (lengthBytes > _options.MaxRequestBytes)
            throw new CloudRequestException(
                $"read of {lengthBytes} bytes exceeds the limit of {_options.MaxRequestBytes}; split it");
        var stripe = VolumeMath.StripeDataBytes(v);
        var partitionBytes = VolumeMath.StripesPerPartition(v, _options.PartitionTargetBytes) * stripe;
        var firstPartition = offsetBytes / partitionBytes;
        var end = offsetBytes + lengthBytes;
        if ((end - 1) / partitionBytes == firstPartition)
        {
            // The common case (a request within one partition): no list, no WhenAll.
            await ReadPieceAsync(v, firstPartition, offsetBytes, destination).ConfigureAwait(false);
        }
        else
        {
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
        CloudMetrics.RecordIo("read", lengthBytes, start);
    }

    private async Task ReadPieceAsync(VolumeInfo v, long partition, long offset, Memory<byte> destination)
    {
        var stripe = VolumeMath.StripeDataBytes(v);
        var lockGrain = grains.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, partition));
        var grant = await heldLocks.AcquireAsync(
            lockGrain,
            new LockRequest(
                offset / stripe,
                (offset + destination.Length - 1) / stripe,
                LockMode.Shared,
                _siloAddress,
                _options.LockLease,
                WaitForPendingWrites: true))
            .ConfigureAwait(false);
        try
        {
            // The engine knows nothing of Orleans: its errors become ones every caller can deserialize, as the RAID
            // worker grain would have made them.
            if (reach.ReachesHere(v))
            {
                await EngineErrors.Guard(() => worker.ReadIntoAsync(v.Name, offset, destination)).ConfigureAwait(false);
            }
            else
            {
                var data = await grains.GetGrain<IRaidWorkerGrain>(reach.WorkerSiloFor(v)).ReadAsync(
                    v.Name, offset, destination.Length).ConfigureAwait(false);
                data.CopyTo(destination);
            }
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
        await directory.GetAsync(volumeName).ConfigureAwait(false);
        await writes.DrainAsync(volumeName).ConfigureAwait(false);
        var flushes = new List<Task>();
        foreach (var m in membership.CurrentSnapshot.Members.Values)
            if (m.Status == SiloStatus.Active)
                flushes.Add(grains.GetGrain<IRaidWorkerGrain>(m.Name).FlushAsync(volumeName));
        await Task.WhenAll(flushes).ConfigureAwait(false);
        CloudMetrics.RecordIo("flush", 0, start);
    }

    /// <summary>Discards a block-aligned range (reads return zeroes).</summary>
    public async Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes)
    {
        var v = await directory.GetAsync(volumeName).ConfigureAwait(false);
        VolumeMath.CheckRange(v, offsetBytes, lengthBytes);
        var start = Stopwatch.GetTimestamp();
        await grains.GetGrain<IRaidWorkerGrain>(reach.WorkerSiloFor(v)).TrimAsync(
            volumeName, offsetBytes, lengthBytes).ConfigureAwait(false);
        CloudMetrics.RecordIo("trim", 0, start);
    }
}
