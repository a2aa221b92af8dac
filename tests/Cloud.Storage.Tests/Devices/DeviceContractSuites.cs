using Cloud.Storage.Devices;

namespace Cloud.Storage.Tests.Devices;

public sealed class MemoryBlockDeviceContractTests : BlockDeviceContractTests
{
    protected override ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes) =>
        ValueTask.FromResult<IBlockDevice>(new MemoryBlockDevice(capacityBytes));
}

public sealed class FileBlockDeviceContractTests : BlockDeviceContractTests, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-filedev-").FullName;

    protected override ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes) =>
        ValueTask.FromResult<IBlockDevice>(
            new FileBlockDevice(Path.Combine(_dir, $"{Guid.NewGuid():N}.img"), capacityBytes));

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>The file device with every I/O on the thread pool (none inline on the caller's thread).</summary>
public sealed class QueuedFileBlockDeviceContractTests : BlockDeviceContractTests, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-filedev-q-").FullName;

    protected override ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes) =>
        ValueTask.FromResult<IBlockDevice>(
            new FileBlockDevice(Path.Combine(_dir, $"{Guid.NewGuid():N}.img"), capacityBytes)
            {
                InlineIoMaxBytes = 0,
                InlineWriteMaxBytes = 0,
            });

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>The file device with every I/O inline on the caller's thread, whatever its size.</summary>
public sealed class InlineFileBlockDeviceContractTests : BlockDeviceContractTests, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-filedev-i-").FullName;

    protected override ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes) =>
        ValueTask.FromResult<IBlockDevice>(
            new FileBlockDevice(
                Path.Combine(_dir, $"{Guid.NewGuid():N}.img"),
                capacityBytes) { InlineIoMaxBytes = int.MaxValue, InlineWriteMaxBytes = int.MaxValue });

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>A fault device with no faults configured must be a transparent decorator.</summary>
public sealed class FaultInjectingBlockDeviceContractTests : BlockDeviceContractTests
{
    protected override ValueTask<IBlockDevice> CreateDeviceAsync(long capacityBytes) =>
        ValueTask.FromResult<IBlockDevice>(
            new FaultInjectingBlockDevice(new MemoryBlockDevice(capacityBytes), seed: 1, ownsInner: true));
}
