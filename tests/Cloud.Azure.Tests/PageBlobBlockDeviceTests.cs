using Azure.Storage.Blobs.Models;
using Cloud.Azure.Tests.Infrastructure;
using Cloud.Storage.Azure;
using Cloud.Storage.Devices;

namespace Cloud.Azure.Tests;

[Collection(AzuriteCollection.Name)]
public sealed class PageBlobBlockDeviceTests(AzuriteFixture fixture)
{
    private const long OneMiB = 1024 * 1024;
    private const int Sector = PageBlobBlockDevice.SectorBytes;

    [Fact]
    public async Task WriteThenRead_ReturnsTheSameBytes_AndUnwrittenSectorsReadAsZeros()
    {
        await using var device = await fixture.Connect().OpenDeviceAsync(fixture.NewContainerName(), "disk0", 4 * OneMiB);
        byte[] data = Pattern(seed: 1, 3 * Sector);
        await device.WriteAsync(2 * Sector, data);

        byte[] back = new byte[5 * Sector];
        await device.ReadAsync(Sector, back);
        Assert.All(back[..Sector], b => Assert.Equal(0, b));
        Assert.Equal(data, back[Sector..(4 * Sector)]);
        Assert.All(back[(4 * Sector)..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Open_CreatesAPageBlobOfTheRequestedSize_WithTheDevicesSectorAndLimits()
    {
        var connection = fixture.Connect(new PageBlobDeviceOptions { MaxInFlightIo = 7 });
        string container = fixture.NewContainerName();
        await using var device = await connection.OpenDeviceAsync(container, "dir/disk.vhd", 8 * OneMiB);

        BlobProperties properties = (await connection.GetPageBlobClient(container, "dir/disk.vhd").GetPropertiesAsync()).Value;
        Assert.Equal(BlobType.Page, properties.BlobType);
        Assert.Equal(8 * OneMiB, properties.ContentLength);
        Assert.Equal(8 * OneMiB, device.CapacityBytes);
        Assert.Equal(4096, device.SectorSizeBytes);
        Assert.Equal(7, device.MaxInFlightIo);
        Assert.EndsWith($"/{container}/dir/disk.vhd", device.Name);
    }

    private static byte[] Pattern(int seed, int lengthBytes)
    {
        var data = new byte[lengthBytes];
        new Random(seed).NextBytes(data);
        return data;
    }
}
