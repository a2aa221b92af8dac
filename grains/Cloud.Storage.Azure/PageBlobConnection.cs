using Azure.Core;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Specialized;

namespace Cloud.Storage.Azure;

/// <summary>
/// Access to one storage account's blob service, with the device settings (retries, timeout,
/// service version) applied to every client built from it. Make one per account and open devices
/// from it: the SDK clients it hands out share one HTTP pipeline and connection pool.
/// </summary>
public sealed class PageBlobConnection
{
    private readonly BlobServiceClient _service;

    private PageBlobConnection(BlobServiceClient service, PageBlobDeviceOptions options)
    {
        _service = service;
        Options = options;
    }

    /// <summary>The device settings this connection was made with (validated).</summary>
    public PageBlobDeviceOptions Options { get; }

    /// <summary>The blob service endpoint, e.g. <c>https://account.blob.core.windows.net/</c>.</summary>
    public Uri ServiceUri => _service.Uri;

    /// <summary>
    /// Connects with a storage connection string: the development string for Azurite
    /// (<c>UseDevelopmentStorage=true</c> or an explicit <c>BlobEndpoint=…</c>), or an account key string.
    /// </summary>
    public static PageBlobConnection FromConnectionString(
        string connectionString,
        PageBlobDeviceOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        options ??= new PageBlobDeviceOptions();
        return new PageBlobConnection(new BlobServiceClient(connectionString, options.ToBlobClientOptions()), options);
    }

    /// <summary>
    /// Connects to <paramref name="serviceUri"/> with an Entra ID credential; in production that is
    /// <c>new DefaultAzureCredential()</c> (managed identity on the silo's host), and the identity
    /// needs the "Storage Blob Data Contributor" role on the account or container.
    /// </summary>
    public static PageBlobConnection FromUri(
        Uri serviceUri,
        TokenCredential credential,
        PageBlobDeviceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(serviceUri);
        ArgumentNullException.ThrowIfNull(credential);
        if (!serviceUri.IsAbsoluteUri
            || (serviceUri.Scheme != Uri.UriSchemeHttps && serviceUri.Scheme != Uri.UriSchemeHttp))
        {
            throw new ArgumentException(
                $"serviceUri must be an absolute http(s) URI of a blob service, not '{serviceUri}'.",
                nameof(serviceUri));
        }

        options ??= new PageBlobDeviceOptions();
        return new PageBlobConnection(
            new BlobServiceClient(serviceUri, credential, options.ToBlobClientOptions()), options);
    }

    /// <summary>
    /// The SDK client of one container (for tools and tests; devices need only <see cref="OpenDeviceAsync"/>).
    /// </summary>
    public BlobContainerClient GetContainerClient(string container)
    {
        PageBlobNames.ValidateContainer(container);
        return _service.GetBlobContainerClient(container);
    }

    /// <summary>The SDK client of one page blob, built with this connection's retry and version settings.</summary>
    public PageBlobClient GetPageBlobClient(string container, string blob)
    {
        PageBlobNames.ValidateBlob(blob);
        return GetContainerClient(container).GetPageBlobClient(blob);
    }

    /// <summary>
    /// Opens the page blob <paramref name="container"/>/<paramref name="blob"/> as a block device. With
    /// <paramref name="capacityBytes"/> the blob is created at that size when absent (and must have that size
    /// when present); without it the blob must exist. See
    /// <see cref="PageBlobBlockDevice.OpenAsync(PageBlobClient, long?, PageBlobDeviceOptions?, BlobContainerClient?, CancellationToken)"/>.
    /// </summary>
    public ValueTask<PageBlobBlockDevice> OpenDeviceAsync(
        string container,
        string blob,
        long? capacityBytes = null,
        CancellationToken cancellationToken = default)
    {
        var containerClient = GetContainerClient(container);
        PageBlobNames.ValidateBlob(blob);
        return PageBlobBlockDevice.OpenAsync(
            containerClient.GetPageBlobClient(blob),
            capacityBytes,
            Options,
            Options.CreateContainerIfMissing ? containerClient : null,
            cancellationToken);
    }
}
