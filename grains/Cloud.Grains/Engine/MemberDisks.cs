using Cloud.Grains.Abstractions;
using Cloud.Storage.Azure;
using Microsoft.Extensions.Configuration;

namespace Cloud.Grains.Engine;

/// <summary>
/// The catalog's member locations (<see cref="VolumeInfo.DiskPaths"/>): a file member is stored as its plain full path,
/// as volumes always were, and a page-blob member as its descriptor <c>pageblob:CONTAINER/BLOB</c>. This is the one
/// place that converts between those locations, the operator's descriptors and <see cref="DiskDescriptor"/>.
/// </summary>
public static class MemberDisks
{
    /// <summary>The disk a catalog location names.</summary>
    public static DiskDescriptor FromLocation(string location) =>
        location.StartsWith(DiskDescriptor.PageBlobScheme + ":", StringComparison.OrdinalIgnoreCase) ||
        location.StartsWith(DiskDescriptor.FileScheme + ":", StringComparison.OrdinalIgnoreCase)
            ? DiskDescriptor.Parse(location)
            : new FileDisk(location);

    /// <summary>The catalog location of a disk.</summary>
    public static string ToLocation(DiskDescriptor disk) => disk switch
    {
        FileDisk file => file.Path,
        _ => disk.ToString(),
    };

    /// <summary>
    /// The operator's descriptor of a catalog location (<c>file:PATH</c> or <c>pageblob:CONTAINER/BLOB</c>), as
    /// <c>volume show</c> lists it.
    /// </summary>
    public static string Describe(string location) => FromLocation(location).ToString();

    /// <summary>
    /// Where the host-independent names of block devices live: a path under it names the same disk on every host it is
    /// attached to.
    /// </summary>
    public const string SharedDevicePrefix = "/dev/disk/by-id/";

    /// <summary>
    /// Whether every host reaches the disk at <paramref name="location"/>: a page blob, or a block device named by its
    /// host-independent id (an Azure shared disk, a SAN LUN attached to several hosts). Any other file is one host's.
    /// </summary>
    public static bool IsShared(string location) =>
        FromLocation(location) switch
        {
            FileDisk file => file.Path.StartsWith(SharedDevicePrefix, StringComparison.Ordinal),
            _ => true,
        };

    /// <summary>
    /// The host of each member at <paramref name="locations"/> when created by a silo of <paramref name="hostName"/>:
    /// empty for a shared disk.
    /// </summary>
    public static System.Collections.Immutable.ImmutableArray<string> HostsOf(
        IEnumerable<string> locations,
        string hostName) =>
        [.. locations.Select(l => IsShared(l) ? "" : hostName)];

    /// <summary>Whether a catalog location is a file on the silo's host.</summary>
    public static bool IsFile(string location) => FromLocation(location) is FileDisk;

    /// <summary>
    /// Parses an operator's descriptor into a catalog location; a relative file path is taken relative to
    /// <paramref name="baseDirectory"/>. Throws <see cref="CloudRequestException"/> naming the value and the allowed
    /// forms.
    /// </summary>
    public static string ParseRequested(string? text, string baseDirectory)
    {
        DiskDescriptor disk;
        try
        {
            disk = DiskDescriptor.Parse(text ?? "");
        }
        catch (FormatException ex)
        {
            throw new CloudRequestException($"--disk: {ex.Message}");
        }
        return disk is FileDisk file ? Path.GetFullPath(file.Path, baseDirectory) : ToLocation(disk);
    }

    /// <summary>The configuration section of the page-blob account (<see cref="PageBlobAccountOptions"/>).</summary>
    public const string PageBlobsSectionName = "PageBlobs";

    /// <summary>The keys <see cref="BindPageBlobAccount"/> falls back to when the section leaves one unset.</summary>
    public static readonly string[] FallbackKeys =
        ["Cloud:Azure:ConnectionString", "Cloud:Azure:BlobEndpoint", "Cloud:Azure:DisksContainer"];

    /// <summary>
    /// Binds the page-blob account of a silo: the <c>PageBlobs</c> section (<c>PageBlobs:ConnectionString</c>,
    /// <c>PageBlobs:ServiceUri</c>, <c>PageBlobs:Device:…</c>), falling back to the keys the Aspire AppHost and the
    /// Bicep templates set, <c>Cloud:Azure:ConnectionString</c>, <c>Cloud:Azure:BlobEndpoint</c> and
    /// <c>Cloud:Azure:DisksContainer</c>.
    /// </summary>
    public static void BindPageBlobAccount(IConfiguration configuration, PageBlobAccountOptions options)
    {
        configuration.GetSection(PageBlobsSectionName).Bind(options);
        if (string.IsNullOrWhiteSpace(options.ConnectionString)
            && configuration["Cloud:Azure:ConnectionString"] is { Length: > 0 } connectionString)
            options.ConnectionString = connectionString;
        if (options.ServiceUri is null && configuration["Cloud:Azure:BlobEndpoint"] is { Length: > 0 } endpoint)
        {
            if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri))
                throw new InvalidOperationException(
                    $"Cloud:Azure:BlobEndpoint '{endpoint}' is not an absolute URI; use e.g. https://ACCOUNT.blob.core.windows.net/");
            options.ServiceUri = uri;
        }
        if (string.IsNullOrWhiteSpace(options.DefaultContainer)
            && configuration["Cloud:Azure:DisksContainer"] is { Length: > 0 } container)
            options.DefaultContainer = container;
    }
}
