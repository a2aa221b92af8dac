using Azure.Core;
using Azure.Storage.Blobs;

namespace Cloud.Storage.Azure;

/// <summary>
/// Settings of a <see cref="PageBlobBlockDevice"/>: the bound on in-flight I/O, the SDK's retry
/// policy and the storage API version. Each property has a <c>Default…</c> constant beside it and
/// its valid range in its documentation; <see cref="Validate"/> names the bad field.
/// </summary>
public sealed class PageBlobDeviceOptions
{
    /// <summary>Default of <see cref="MaxInFlightIo"/>.</summary>
    public const int DefaultMaxInFlightIo = 16;

    /// <summary>
    /// Largest accepted <see cref="MaxInFlightIo"/>; beyond it the HTTP connection pool, not the blob, is the
    /// bottleneck.
    /// </summary>
    public const int MaxInFlightIoLimit = 256;

    /// <summary>Default of <see cref="MaxRetries"/>.</summary>
    public const int DefaultMaxRetries = 5;

    /// <summary>Largest accepted <see cref="MaxRetries"/>.</summary>
    public const int MaxRetriesLimit = 20;

    /// <summary>
    /// Default of <see cref="RetryDelay"/>: the first back-off; later ones double (exponential mode).
    /// </summary>
    public static readonly TimeSpan DefaultRetryDelay = TimeSpan.FromMilliseconds(400);

    /// <summary>Default of <see cref="MaxRetryDelay"/>.</summary>
    public static readonly TimeSpan DefaultMaxRetryDelay = TimeSpan.FromSeconds(8);

    /// <summary>
    /// Default of <see cref="NetworkTimeout"/>. The SDK's own default (100 s) is long for a disk:
    /// a volume would rather fail a stuck member and run degraded than stall every stripe on it.
    /// </summary>
    public static readonly TimeSpan DefaultNetworkTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Default of <see cref="ServiceVersion"/>: 2026-06-06, the newest version Azurite 3.37 accepts.
    /// Azure.Storage.Blobs 12.30.1 would otherwise send 2026-10-06, which Azurite 3.37 rejects;
    /// real Azure storage accounts accept every published version, so this pin works in both places.
    /// </summary>
    public const BlobClientOptions.ServiceVersion DefaultServiceVersion = BlobClientOptions.ServiceVersion.V2026_06_06;

    /// <summary>
    /// Operations that may run at once on one device, 1 to <see cref="MaxInFlightIoLimit"/>; callers beyond wait.
    /// </summary>
    public int MaxInFlightIo { get; set; } = DefaultMaxInFlightIo;

    /// <summary>
    /// Retries after a throttled (503, 500, 429…), timed-out or dropped request, 0 to <see cref="MaxRetriesLimit"/>.
    /// </summary>
    public int MaxRetries { get; set; } = DefaultMaxRetries;

    /// <summary>
    /// First back-off between retries (exponential mode doubles it), 0 to <see cref="MaxRetryDelay"/>.
    /// </summary>
    public TimeSpan RetryDelay { get; set; } = DefaultRetryDelay;

    /// <summary>Longest back-off between retries, at least <see cref="RetryDelay"/> and at most 5 minutes.</summary>
    public TimeSpan MaxRetryDelay { get; set; } = DefaultMaxRetryDelay;

    /// <summary>
    /// How long one HTTP try may take before it counts as failed and is retried, 100 ms to 10 minutes.
    /// </summary>
    public TimeSpan NetworkTimeout { get; set; } = DefaultNetworkTimeout;

    /// <summary>The storage REST API version the client speaks (see <see cref="DefaultServiceVersion"/>).</summary>
    public BlobClientOptions.ServiceVersion ServiceVersion { get; set; } = DefaultServiceVersion;

    /// <summary>Whether opening a device creates its container when it is missing (default true).</summary>
    public bool CreateContainerIfMissing { get; set; } = true;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first field out of range.</summary>
    public void Validate()
    {
        if (MaxInFlightIo is < 1 or > MaxInFlightIoLimit)
        {
            throw new ArgumentOutOfRangeException(
                nameof(MaxInFlightIo), MaxInFlightIo, $"MaxInFlightIo must be 1 to {MaxInFlightIoLimit}.");
        }

        if (MaxRetries is < 0 or > MaxRetriesLimit)
        {
            throw new ArgumentOutOfRangeException(
                nameof(MaxRetries), MaxRetries, $"MaxRetries must be 0 to {MaxRetriesLimit}.");
        }

        if (MaxRetryDelay < TimeSpan.Zero || MaxRetryDelay > TimeSpan.FromMinutes(5))
        {
            throw new ArgumentOutOfRangeException(
                nameof(MaxRetryDelay), MaxRetryDelay, "MaxRetryDelay must be 0 to 5 minutes.");
        }

        if (RetryDelay < TimeSpan.Zero || RetryDelay > MaxRetryDelay)
        {
            throw new ArgumentOutOfRangeException(
                nameof(RetryDelay), RetryDelay, $"RetryDelay must be 0 to MaxRetryDelay ({MaxRetryDelay}).");
        }

        if (NetworkTimeout < TimeSpan.FromMilliseconds(100) || NetworkTimeout > TimeSpan.FromMinutes(10))
        {
            throw new ArgumentOutOfRangeException(
                nameof(NetworkTimeout), NetworkTimeout, "NetworkTimeout must be 100 ms to 10 minutes.");
        }

        if (!Enum.IsDefined(ServiceVersion))
        {
            throw new ArgumentOutOfRangeException(
                nameof(ServiceVersion),
                ServiceVersion,
                "ServiceVersion must be a value of BlobClientOptions.ServiceVersion.");
        }
    }

    /// <summary>
    /// The SDK client options these settings stand for: exponential retries with our limits, our
    /// network timeout and the pinned service version. Every blob client a device uses is built from them,
    /// so throttling and dropped connections are retried by the SDK itself, below the device.
    /// </summary>
    public BlobClientOptions ToBlobClientOptions()
    {
        Validate();
        var options = new BlobClientOptions(ServiceVersion);
        options.Retry.Mode = RetryMode.Exponential;
        options.Retry.MaxRetries = MaxRetries;
        options.Retry.Delay = RetryDelay;
        options.Retry.MaxDelay = MaxRetryDelay;
        options.Retry.NetworkTimeout = NetworkTimeout;
        return options;
    }
}
