using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Load;
using Cloud.Grains.Hosting;
using Cloud.Grains.Volumes;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Cloud.Grains.Workers;

/// <summary>
/// The first server's front end: a stateless worker, so each silo serves its own clients locally. Writes go through
/// <see cref="FirstServer"/>; reads take a shared lock (after every acknowledged earlier write of those stripes
/// settled) and read from this silo's RAID worker.
/// </summary>
[StatelessWorker, Reentrant]
internal sealed class FrontEndGrain(FirstServer firstServer, VolumeDirectory directory, ILocalSiloDetails silo, IClusterMembershipService membership, IOptions<CloudOptions> options) : Grain, IFrontEndGrain
{
    private readonly CloudOptions _options = options.Value;
    private readonly string _siloAddress = silo.SiloAddress.ToParsableString();

    public async Task WriteAsync(string volumeName, long offsetBytes, byte[] data, bool forceUnitAccess)
    {
        var start = Stopwatch.GetTimestamp();
        await firstServer.WriteAsync(volumeName, offsetBytes, data, forceUnitAccess);
        CloudMetrics.RecordIo("write", data.Length, start);
    }

    public async Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes)
    {
        var start = Stopwatch.GetTimestamp();
        var v = await directory.GetAsync(volumeName);
        VolumeMath.CheckRange(v, offsetBytes, lengthBytes);
        if (lengthBytes > _options.MaxRequestBytes)
            throw new CloudRequestException($"read of {lengthBytes} bytes exceeds the limit of {_options.MaxRequestBytes}; split it");
        var stripe = VolumeMath.StripeDataBytes(v);
        var partitionBytes = VolumeMath.StripesPerPartition(v, _options.PartitionTargetBytes) * stripe;
        var worker = GrainFactory.GetGrain<IRaidWorkerGrain>(silo.Name);
        var result = new byte[lengthBytes];
        var pieces = new List<Task>();
        for (long offset = offsetBytes, end = offsetBytes + lengthBytes; offset < end;)
        {
            var partition = offset / partitionBytes;
            var pieceEnd = Math.Min(end, (partition + 1) * partitionBytes);
            pieces.Add(ReadPieceAsync(v, worker, partition, offset, (int)(pieceEnd - offset), result, (int)(offset - offsetBytes)));
            offset = pieceEnd;
        }
        await Task.WhenAll(pieces);
        CloudMetrics.RecordIo("read", lengthBytes, start);
        return result;
    }

    private async Task ReadPieceAsync(VolumeInfo v, IRaidWorkerGrain worker, long partition, long offset, int length, byte[] result, int at)
    {
        var stripe = VolumeMath.StripeDataBytes(v);
        var lockGrain = GrainFactory.GetGrain<IPartitionLockGrain>(VolumeMath.PartitionKey(v, partition));
        var grant = await lockGrain.AcquireMeteredAsync(new LockRequest(offset / stripe, (offset + length - 1) / stripe, LockMode.Shared, _siloAddress, _options.LockLease, WaitForPendingWrites: true));
        try
        {
            var data = await worker.ReadAsync(v.Name, offset, length);
            data.CopyTo(result, at);
        }
        finally
        {
            await lockGrain.ReleaseAsync(grant.FencingToken);
        }
    }

    public async Task FlushAsync(string volumeName)
    {
        var start = Stopwatch.GetTimestamp();
        await directory.GetAsync(volumeName);
        await firstServer.DrainAsync(volumeName);
        await Task.WhenAll(ActiveSiloNames().Select(name => GrainFactory.GetGrain<IRaidWorkerGrain>(name).FlushAsync(volumeName)));
        CloudMetrics.RecordIo("flush", 0, start);
    }

    public async Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes)
    {
        var v = await directory.GetAsync(volumeName);
        VolumeMath.CheckRange(v, offsetBytes, lengthBytes);
        var start = Stopwatch.GetTimestamp();
        await GrainFactory.GetGrain<IRaidWorkerGrain>(silo.Name).TrimAsync(volumeName, offsetBytes, lengthBytes);
        CloudMetrics.RecordIo("trim", 0, start);
    }

    public Task<VolumeStatus> DescribeAsync(string volumeName) => GrainFactory.GetGrain<IVolumeGrain>(volumeName).ShowAsync();

    private IEnumerable<string> ActiveSiloNames() =>
        membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active).Select(m => m.Name);
}
