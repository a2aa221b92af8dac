using Azure.Core;
using Azure.Identity;
using Cloud.Storage.Devices;

namespace Cloud.Storage.Azure;

/// <summary>
/// Where the page-blob disks of a silo live: from configuration (e.g. the <c>Cloud:PageBlobs</c> section).
/// </summary>
public sealed class PageBlobAccountOptions
{
    /// <summary>
    /// A storage connection string (Azurite or an account key). Wins over <see cref="ServiceUri"/>; never logged.
    /// </summary>
    public string? ConnectionString { get; set; }

    /// <summary>
    /// The blob endpoint of the account, used with <c>DefaultAzureCredential</c> (managed identity in production).
    /// </summary>
    public Uri? ServiceUri { get; set; }

    /// <summary>
    /// The container that holds the member disks of volumes created without <c>--disk</c> (3-63 lowercase letters,
    /// digits and single hyphens). Unset: such volumes get files in the silo's data directory, as on one machine. Set,
    /// with an account: every member is a page blob <c>CONTAINER/VOLUME-ID/diskN</c> (see
    /// <see cref="DefaultMember"/>), which every silo reaches, so the volume outlives the host that created it.
    /// </summary>
    public string? DefaultContainer { get; set; }

    /// <summary>Whether volumes created without <c>--disk</c> get page-blob members.</summary>
    public bool HasDefaultContainer => IsConfigured && !string.IsNullOrWhiteSpace(DefaultContainer);

    /// <summary>
    /// The page blob of member <paramref name="index"/> of a volume created without <c>--disk</c>:
    /// <c>{DefaultContainer}/{volumeName}-{volumeTag}/disk{index}</c>, named after the volume and the member, with the
    /// volume id's tag so that a volume created again under the same name never meets the old one's blobs.
    /// </summary>
    public PageBlobDisk DefaultMember(string volumeName, string volumeTag, int index)
    {
        if (!HasDefaultContainer)
            throw new InvalidOperationException(
                "No default page-blob container is configured: set PageBlobs:DefaultContainer and an account.");
        ArgumentException.ThrowIfNullOrWhiteSpace(volumeName);
        ArgumentException.ThrowIfNullOrWhiteSpace(volumeTag);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        var disk = new PageBlobDisk(DefaultContainer!, $"{volumeName}-{volumeTag}/disk{index}");
        PageBlobNames.ValidateContainer(disk.Container);
        PageBlobNames.ValidateBlob(disk.Blob);
        return disk;
    }

    /// <summary>Retry, timeout, in-flight and service-version settings of every page-blob disk.</summary>
    public PageBlobDeviceOptions Device { get; set; } = new();

    /// <summary>Whether an account is configured at all.</summary>
    public bool IsConfigured => !string.IsNullOrWhiteSpace(ConnectionString) || ServiceUri is not null;

    /// <summary>
    /// The connection these settings describe; throws naming the missing settings when neither is set.
    /// <paramref name="credential"/> signs in to <see cref="ServiceUri"/> (the host's managed identity);
    /// <c>DefaultAzureCredential</c> when null.
    /// </summary>
    public PageBlobConnection Connect(TokenCredential? credential = null)
    {
        if (!string.IsNullOrWhiteSpace(ConnectionString))
        {
            return PageBlobConnection.FromConnectionString(ConnectionString, Device);
        }

        if (ServiceUri is not null)
        {
            return PageBlobConnection.FromUri(ServiceUri, credential ?? new DefaultAzureCredential(), Device);
        }

        throw new InvalidOperationException(
            "No page-blob account is configured: set PageBlobs:ConnectionString (Azurite or account key) or PageBlobs:ServiceUri (managed identity).");
    }

    /// <summary>Hides the connection string, which holds the account key.</summary>
    public override string ToString() =>
        $"PageBlobAccountOptions {{ ConnectionString = {(string.IsNullOrEmpty(ConnectionString) ? "<none>" : "<redacted>")}, ServiceUri = {ServiceUri?.ToString() ?? "<none>"}, DefaultContainer = {DefaultContainer ?? "<none>"} }}";
}

/// <summary>
/// Opens the member disk a <see cref="DiskDescriptor"/> names: page blobs through the configured account,
/// files through the engine's <see cref="FileBlockDevice"/> (or a delegate, for hosts that open files their
/// own way). One factory per silo; it is thread-safe.
/// </summary>
public sealed class BlockDeviceFactory
{
    private readonly Lazy<PageBlobConnection>? _pageBlobs;
    private readonly Func<string, long?, CancellationToken, ValueTask<IBlockDevice>> _openFile;

    /// <param name="pageBlobs">The account of page-blob disks, or null when this silo has none.</param>
    /// <param name="openFile">Opens a file disk: path, capacity to create (null = open existing), cancellation.</param>
    /// <param name="credential">Signs in to the account's <c>ServiceUri</c>; <c>DefaultAzureCredential</c> when
    /// null.</param>
    public BlockDeviceFactory(
        PageBlobAccountOptions? pageBlobs,
        Func<string, long?, CancellationToken, ValueTask<IBlockDevice>> openFile,
        TokenCredential? credential = null)
    {
        ArgumentNullException.ThrowIfNull(openFile);
        _openFile = openFile;
        PageBlobs = pageBlobs;
        if (pageBlobs is { IsConfigured: true })
        {
            pageBlobs.Device.Validate();
            _pageBlobs = new Lazy<PageBlobConnection>(() => pageBlobs.Connect(credential));
            if (pageBlobs.DefaultContainer is { Length: > 0 } container) PageBlobNames.ValidateContainer(container);
        }
    }

    /// <summary>
    /// A factory whose file disks are the engine's <see cref="FileBlockDevice"/> (a new file is created at the capacity
    /// given).
    /// </summary>
    public BlockDeviceFactory(PageBlobAccountOptions? pageBlobs, TokenCredential? credential = null)
        : this(
            pageBlobs,
            static (path, capacityBytes, _)
                => ValueTask.FromResult<IBlockDevice>(new FileBlockDevice(path, capacityBytes ?? 0)),
            credential)
    {
    }

    /// <summary>Whether page-blob disks can be opened (an account is configured).</summary>
    public bool SupportsPageBlobs => _pageBlobs is not null;

    /// <summary>The account settings this factory was made with (null when it has none).</summary>
    public PageBlobAccountOptions? PageBlobs { get; private init; }

    /// <summary>
    /// Opens (and with <paramref name="capacityBytes"/>, creates if absent) the disk <paramref name="disk"/> names.
    /// </summary>
    public ValueTask<IBlockDevice> OpenAsync(
        DiskDescriptor disk,
        long? capacityBytes = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(disk);
        return disk switch
        {
            FileDisk file => _openFile(file.Path, capacityBytes, cancellationToken),
            PageBlobDisk blob when _pageBlobs is not null => OpenPageBlobAsync(
                _pageBlobs.Value, blob, capacityBytes, cancellationToken),
            PageBlobDisk blob => throw new InvalidOperationException(
                $"Disk '{blob}' is a page blob, but this silo has no page-blob account configured (PageBlobs:ConnectionString or PageBlobs:ServiceUri)."),
            _ => throw new ArgumentException($"Disk '{disk}' is of an unknown kind.", nameof(disk)),
        };
    }

    /// <summary>Whether the disk exists already: a file at its path, a blob in its container.</summary>
    public async ValueTask<bool> ExistsAsync(DiskDescriptor disk, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(disk);
        return disk switch
        {
            FileDisk file => File.Exists(file.Path),
            PageBlobDisk blob when _pageBlobs is not null =>
                (await _pageBlobs.Value.GetPageBlobClient(blob.Container, blob.Blob)
                    .ExistsAsync(cancellationToken).ConfigureAwait(false)).Value,
            _ => false,
        };
    }

    /// <summary>
    /// Deletes the disk if it exists. Meant for undoing a create that failed half-way, on disks that create made:
    /// never on a disk a volume uses.
    /// </summary>
    public async ValueTask DeleteAsync(DiskDescriptor disk, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(disk);
        switch (disk)
        {
            case FileDisk file:
                File.Delete(file.Path);
                break;
            case PageBlobDisk blob when _pageBlobs is not null:
                await _pageBlobs.Value.GetPageBlobClient(
                    blob.Container,
                    blob.Blob).DeleteIfExistsAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
                break;
        }
    }

    /// <summary>Parses <paramref name="descriptor"/> (see <see cref="DiskDescriptor.Parse"/>) and opens it.</summary>
    public ValueTask<IBlockDevice> OpenAsync(
        string descriptor,
        long? capacityBytes = null,
        CancellationToken cancellationToken = default) =>
        OpenAsync(DiskDescriptor.Parse(descriptor), capacityBytes, cancellationToken);

    private static async ValueTask<IBlockDevice> OpenPageBlobAsync(
        PageBlobConnection connection,
        PageBlobDisk blob,
        long? capacityBytes,
        CancellationToken cancellationToken) =>
        await connection.OpenDeviceAsync(
            blob.Container, blob.Blob, capacityBytes, cancellationToken).ConfigureAwait(false);
}
