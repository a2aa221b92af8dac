using Azure.Core;
using Azure.Storage.Blobs;
using Cloud.Storage.Azure;

namespace Cloud.Azure.Tests;

public sealed class PageBlobDeviceOptionsTests
{
    [Fact]
    public void Defaults_AreValid_AndBecomeExponentialSdkRetries_WithThePinnedServiceVersion()
    {
        var options = new PageBlobDeviceOptions();
        options.Validate();
        var client = options.ToBlobClientOptions();
        Assert.Equal(RetryMode.Exponential, client.Retry.Mode);
        Assert.Equal(PageBlobDeviceOptions.DefaultMaxRetries, client.Retry.MaxRetries);
        Assert.Equal(PageBlobDeviceOptions.DefaultNetworkTimeout, client.Retry.NetworkTimeout);
        Assert.Equal(PageBlobDeviceOptions.DefaultRetryDelay, client.Retry.Delay);
        Assert.Equal(PageBlobDeviceOptions.DefaultMaxRetryDelay, client.Retry.MaxDelay);
        Assert.Equal(BlobClientOptions.ServiceVersion.V2026_06_06, PageBlobDeviceOptions.DefaultServiceVersion);
    }

    public static TheoryData<string, Action<PageBlobDeviceOptions>> BadOptions => new()
    {
        { nameof(PageBlobDeviceOptions.MaxInFlightIo), o => o.MaxInFlightIo = 0 },
        {
            nameof(PageBlobDeviceOptions.MaxInFlightIo),
            o => o.MaxInFlightIo = PageBlobDeviceOptions.MaxInFlightIoLimit + 1
        },
        { nameof(PageBlobDeviceOptions.MaxRetries), o => o.MaxRetries = -1 },
        { nameof(PageBlobDeviceOptions.MaxRetries), o => o.MaxRetries = PageBlobDeviceOptions.MaxRetriesLimit + 1 },
        { nameof(PageBlobDeviceOptions.RetryDelay), o => o.RetryDelay = TimeSpan.FromMinutes(1) },
        { nameof(PageBlobDeviceOptions.MaxRetryDelay), o => o.MaxRetryDelay = TimeSpan.FromHours(1) },
        { nameof(PageBlobDeviceOptions.NetworkTimeout), o => o.NetworkTimeout = TimeSpan.FromMilliseconds(1) },
        { nameof(PageBlobDeviceOptions.ServiceVersion), o => o.ServiceVersion = (BlobClientOptions.ServiceVersion)999 },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Validate_NamesTheFieldOutOfRange(string field, Action<PageBlobDeviceOptions> spoil)
    {
        var options = new PageBlobDeviceOptions();
        spoil(options);
        var error = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Equal(field, error.ParamName);
        Assert.Contains(field, error.Message);
    }
}
