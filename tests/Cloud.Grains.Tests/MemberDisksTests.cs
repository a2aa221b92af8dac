using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Storage.Azure;
using Microsoft.Extensions.Configuration;

namespace Cloud.Grains.Tests;

/// <summary>The catalog's member locations and the silo's page-blob account settings.</summary>
public sealed class MemberDisksTests
{
    private static IConfiguration Configuration(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value)))
            .Build();

    [Fact]
    public void AspireAndBicepKeys_FillThePageBlobAccount_WhenThePageBlobsSectionIsAbsent()
    {
        var options = new PageBlobAccountOptions();
        MemberDisks.BindPageBlobAccount(Configuration(
            ("Cloud:Azure:ConnectionString", "UseDevelopmentStorage=true"),
            ("Cloud:Azure:BlobEndpoint", "https://acct.blob.core.windows.net/")), options);
        Assert.Equal("UseDevelopmentStorage=true", options.ConnectionString);
        Assert.Equal(new Uri("https://acct.blob.core.windows.net/"), options.ServiceUri);
    }

    [Fact]
    public void ThePageBlobsSection_WinsOverTheCloudAzureKeys()
    {
        var options = new PageBlobAccountOptions();
        MemberDisks.BindPageBlobAccount(Configuration(
            ("PageBlobs:ConnectionString", "from-section"),
            ("PageBlobs:ServiceUri", "https://section.blob.core.windows.net/"),
            ("Cloud:Azure:ConnectionString", "from-aspire"),
            ("Cloud:Azure:BlobEndpoint", "https://aspire.blob.core.windows.net/")), options);
        Assert.Equal("from-section", options.ConnectionString);
        Assert.Equal(new Uri("https://section.blob.core.windows.net/"), options.ServiceUri);
    }

    [Fact]
    public void NoSettings_LeaveTheAccountUnconfigured_AndABadEndpointIsNamed()
    {
        var options = new PageBlobAccountOptions();
        MemberDisks.BindPageBlobAccount(Configuration(), options);
        Assert.False(options.IsConfigured);
        var ex = Assert.Throws<InvalidOperationException>(
            () => MemberDisks.BindPageBlobAccount(
                Configuration(("Cloud:Azure:BlobEndpoint", "not a uri")), new PageBlobAccountOptions()));
        Assert.Contains("'not a uri'", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/data/volumes/v-1/disk0.img", "file:/data/volumes/v-1/disk0.img")]
    [InlineData("pageblob:disks/v/0", "pageblob:disks/v/0")]
    public void CatalogLocations_AreListedAsDescriptors(string location, string descriptor) =>
        Assert.Equal(descriptor, MemberDisks.Describe(location));

    [Fact]
    public void RequestedDisks_StoreFilesAsFullPathsAndBlobsAsDescriptors_AndBadOnesAreNamed()
    {
        Assert.Equal("/data/rel/d.img", MemberDisks.ParseRequested("file:rel/d.img", "/data"));
        Assert.Equal("/abs/d.img", MemberDisks.ParseRequested("file:/abs/d.img", "/data"));
        Assert.Equal("pageblob:disks/v/0", MemberDisks.ParseRequested("pageblob:disks/v/0", "/data"));
        var ex = Assert.Throws<CloudRequestException>(
            () => MemberDisks.ParseRequested("pageblob:nocontainer", "/data"));
        Assert.Contains("'pageblob:nocontainer'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'file:PATH' or 'pageblob:CONTAINER/BLOB'", ex.Message, StringComparison.Ordinal);
    }
}
