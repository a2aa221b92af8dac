using System.Diagnostics;

namespace Cloud.Storage;

/// <summary>
/// The engine's spans: one per member I/O request, on the same "Cloud" activity source the silo's spans use, so that
/// a write's trace reaches down to the disks it touched. The engine knows nothing of Orleans or OpenTelemetry; a span
/// costs nothing when no listener subscribes to the source.
/// </summary>
public static class StorageTracing
{
    /// <summary>The activity source name; the same as the silo's, so one subscription sees every span.</summary>
    public const string SourceName = "Cloud";

    /// <summary>One request to one member device (read, write, scattered read or gathered write).</summary>
    public const string MemberIo = "member io";

    /// <summary>The source the engine's spans start from.</summary>
    public static readonly ActivitySource Source = new(SourceName);
}
