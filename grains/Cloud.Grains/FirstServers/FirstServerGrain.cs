using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;

namespace Cloud.Grains.FirstServers;

/// <summary>
/// The first server for Orleans clients: a stateless worker, so each silo serves its own clients locally.
/// The work is <see cref="FirstServerService"/>'s, which the silo's NBD server also calls directly.
/// </summary>
[StatelessWorker, Reentrant]
internal sealed class FirstServerGrain(
    FirstServerService frontEnd, IOptions<CloudOptions> options) : Grain, IFirstServerGrain
{
    private readonly int _maxRequestBytes = options.Value.MaxRequestBytes;

    public Task WriteAsync(string volumeName, long offsetBytes, byte[] data, bool forceUnitAccess) =>
        frontEnd.WriteAsync(volumeName, offsetBytes, data, forceUnitAccess);

    public async Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes)
    {
        // Checked before the buffer is allocated, so a bad length cannot make the silo allocate gigabytes.
        if (lengthBytes <= 0)
            throw new CloudRequestException(
                $"length {lengthBytes} is not allowed; use a positive multiple of {VolumeMath.SectorSizeBytes}");
        if (lengthBytes > _maxRequestBytes)
            throw new CloudRequestException(
                $"read of {lengthBytes} bytes exceeds the limit of {_maxRequestBytes}; split it");
        var result = new byte[lengthBytes];
        await frontEnd.ReadAsync(volumeName, offsetBytes, result);
        return result;
    }

    public Task FlushAsync(string volumeName) => frontEnd.FlushAsync(volumeName);

    public Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes)
        => frontEnd.TrimAsync(volumeName, offsetBytes, lengthBytes);

    public Task<VolumeStatus> DescribeAsync(string volumeName)
        => GrainFactory.GetGrain<IVolumeGrain>(volumeName).ShowAsync();
}
