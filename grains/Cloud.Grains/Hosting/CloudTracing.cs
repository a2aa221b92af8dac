using System.Diagnostics;

namespace Cloud.Grains.Hosting;

/// <summary>
/// The "Cloud" activity source: spans of the first server's writes, delegations and reads, the RAID worker's
/// batches, the partition-lock calls a batch makes, the engine's disk writes and (from the engine's own source of the same
/// name, <see cref="Cloud.Storage.StorageTracing"/>) each member I/O. With Orleans' activity propagation
/// (<c>AddActivityPropagation()</c>, added by <see cref="CloudSiloBuilderExtensions.AddCloud"/>) the spans of one
/// write form one trace across silos; OpenTelemetry subscribes to the source in the silo (ServiceDefaults).
/// </summary>
public static class CloudTracing
{
    /// <summary>The activity source name to subscribe to.</summary>
    public const string SourceName = "Cloud";

    /// <summary>A first server's block-aligned write, from arrival to acknowledgement (<c>FirstServerWrites</c>).</summary>
    public const string FirstServerWrite = "first-server write";

    /// <summary>The delegation of one partition's piece of a write: timestamp, target choice, the replicated copy.</summary>
    public const string Delegate = "delegate";

    /// <summary>A first server's read, from arrival to the data (<c>FirstServerService</c>).</summary>
    public const string FirstServerRead = "first-server read";

    /// <summary>One RAID worker batch: lock, validation, engine writes, commit (<c>BatchExecutor</c>).</summary>
    public const string RaidBatch = "raid batch";

    /// <summary>A batch's call to the partition-lock grain that takes the stripes and validates the copies.</summary>
    public const string LockAcquire = "partition-lock acquire";

    /// <summary>A batch's call to the partition-lock grain that commits the new timestamps and releases the lock.</summary>
    public const string LockCommit = "partition-lock commit";

    /// <summary>One run of blocks written by the engine to the member disks (data and parity).</summary>
    public const string EngineWrite = "engine write";

    /// <summary>
    /// One request of the engine to one member device (<see cref="Cloud.Storage.StorageTracing.MemberIo"/>), with the
    /// member's index, device name and kind of I/O as tags.
    /// </summary>
    public const string MemberIo = Cloud.Storage.StorageTracing.MemberIo;

    /// <summary>The source every Cloud span is started from.</summary>
    public static readonly ActivitySource Source = new(SourceName);
}
