using Cloud.Azure.Tests.Infrastructure;
using Cloud.Storage.Azure;
using Cloud.Storage.Devices;

namespace Cloud.Azure.Tests;

public sealed class DiskDescriptorTests
{
    [Theory]
    [InlineData("file:/var/lib/cloud/disk0.img")]
    [InlineData("file:relative/disk with spaces.img")]
    [InlineData("file:/dev/nvme0n1")]
    [InlineData("pageblob:disks/vol1-member0")]
    [InlineData("pageblob:disks/vol1/member0.vhd")]
    public void ParseThenFormat_RoundTrips(string text)
    {
        DiskDescriptor disk = DiskDescriptor.Parse(text);
        Assert.Equal(text, disk.ToString());
        Assert.Equal(disk, DiskDescriptor.Parse(disk.ToString()));
    }

    [Fact]
    public void Parse_SplitsContainerAtTheFirstSlash_AndKeepsTheBlobPath()
    {
        var disk = Assert.IsType<PageBlobDisk>(DiskDescriptor.Parse("pageblob:disks/vol1/member0.vhd"));
        Assert.Equal("disks", disk.Container);
        Assert.Equal("vol1/member0.vhd", disk.Blob);
        Assert.Equal("/tmp/x", Assert.IsType<FileDisk>(DiskDescriptor.Parse("FILE:/tmp/x")).Path);
    }

    [Theory]
    [InlineData("", "no 'scheme:' prefix")]
    [InlineData("/tmp/disk.img", "no 'scheme:' prefix")]
    [InlineData("file:", "file path is empty")]
    [InlineData("nfs:host/disk", "scheme 'nfs' is unknown")]
    [InlineData("pageblob:disks", "container and a blob name")]
    [InlineData("pageblob:disks/", "container and a blob name")]
    [InlineData("pageblob:/blob", "container and a blob name")]
    [InlineData("pageblob:Disks/blob", "Container name 'Disks'")]
    [InlineData("pageblob:ab/blob", "Container name 'ab'")]
    [InlineData("pageblob:dis--ks/blob", "Container name 'dis--ks'")]
    [InlineData("pageblob:disks/blob.", "Blob name 'blob.'")]
    public void Parse_OfBadText_ThrowsFormatException_NamingTheTextAndTheRule(string text, string expected)
    {
        var error = Assert.Throws<FormatException>(() => DiskDescriptor.Parse(text));
        Assert.Contains($"'{text}'", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.Contains("'file:PATH' or 'pageblob:CONTAINER/BLOB'", error.Message);
        Assert.False(DiskDescriptor.TryParse(text, out _));
    }
}

[Collection(AzuriteCollection.Name)]
public sealed class BlockDeviceFactoryTests(AzuriteFixture fixture)
{
    private static ValueTask<IBlockDevice> NoFiles(
        string path,
        long? capacityBytes,
        CancellationToken cancellationToken) =>
        throw new InvalidOperationException($"This test opens no file disks (asked for {path}).");

    [Fact]
    public async Task OpenAsync_OfAPageBlobDescriptor_CreatesThenReopensTheBlobFromTheConfiguredAccount()
    {
        var account = new PageBlobAccountOptions
        {
            ConnectionString = fixture.Azurite.ConnectionString(),
            Device = AzuriteFixture.FastRetryOptions()
        };
        var factory = new BlockDeviceFactory(account, NoFiles);
        var descriptor = $"pageblob:{fixture.NewContainerName()}/vol/member0";
        var data = new byte[PageBlobBlockDevice.SectorBytes];
        new Random(11).NextBytes(data);

        await using (IBlockDevice created = await factory.OpenAsync(descriptor, 1024 * 1024))
        {
            Assert.IsType<PageBlobBlockDevice>(created);
            await created.WriteAsync(8192, data);
        }

        await using IBlockDevice reopened = await factory.OpenAsync(descriptor);
        var back = new byte[data.Length];
        await reopened.ReadAsync(8192, back);
        Assert.Equal(data, back);
        Assert.Equal(1024 * 1024, reopened.CapacityBytes);
    }

    [Fact]
    public async Task OpenAsync_OfAPageBlob_WithoutAnAccount_SaysWhichSettingIsMissing()
    {
        var factory = new BlockDeviceFactory(new PageBlobAccountOptions(), NoFiles);
        Assert.False(factory.SupportsPageBlobs);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(
            () => factory.OpenAsync("pageblob:disks/member0").AsTask());
        Assert.Contains("PageBlobs:ConnectionString", error.Message);
    }

    [Fact]
    public void AccountOptions_ToString_RedactsTheConnectionString()
    {
        var account = new PageBlobAccountOptions { ConnectionString = fixture.Azurite.ConnectionString() };
        Assert.DoesNotContain("AccountKey", account.ToString());
        Assert.Contains("<redacted>", account.ToString());
    }
}

[Collection(AzuriteCollection.Name)]
public sealed class MixedDiskTests(AzuriteFixture fixture) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-mixed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task DefaultFactory_OpensFileAndPageBlobMembers_FromDescriptors_AndBothHoldTheSameStripeData()
    {
        var factory = new BlockDeviceFactory(new PageBlobAccountOptions
        {
            ConnectionString = fixture.Azurite.ConnectionString(),
            Device = AzuriteFixture.FastRetryOptions(),
        });
        const long capacity = 2 * 1024 * 1024;
        string[] descriptors =
            [$"file:{Path.Combine(_dir, "member0.img")}", $"pageblob:{fixture.NewContainerName()}/vol/member1"];
        var chunk = new byte[64 * 1024];
        new Random(12).NextBytes(chunk);

        var members = new List<IBlockDevice>();
        try
        {
            foreach (var descriptor in descriptors)
            {
                members.Add(await factory.OpenAsync(descriptor, capacity));
            }

            Assert.IsType<FileBlockDevice>(members[0]);
            Assert.IsType<PageBlobBlockDevice>(members[1]);
            foreach (IBlockDevice member in members)
            {
                Assert.Equal(capacity, member.CapacityBytes);
                Assert.Equal(0, 4096 % member.SectorSizeBytes);
                await member.WriteAsync(capacity - chunk.Length, chunk);
                await member.FlushAsync();
            }
        }
        finally
        {
            foreach (IBlockDevice member in members)
            {
                await member.DisposeAsync();
            }
        }

        // Reopened from the descriptors alone, as an assembling silo would.
        foreach (var descriptor in descriptors)
        {
            await using IBlockDevice member = await factory.OpenAsync(descriptor);
            var back = new byte[chunk.Length];
            await member.ReadAsync(capacity - chunk.Length, back);
            Assert.Equal(chunk, back);
        }
    }
}
