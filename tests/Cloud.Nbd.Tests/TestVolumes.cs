using Cloud.Storage.Volumes;

namespace Cloud.Nbd.Tests;

/// <summary>The volume the interop tests serve.</summary>
internal static class TestVolumes
{
    public static ValueTask<IBlockVolume> CreateAsync(string name, long capacityBytes, string directory)
        => ValueTask.FromResult<IBlockVolume>(new MemoryVolume(name, capacityBytes));

    public static ValueTask DisposeAsync(IBlockVolume volume)
        => volume is IAsyncDisposable d ? d.DisposeAsync() : ValueTask.CompletedTask;
}
