namespace Cloud.Grains.Delegation;

/// <summary>
/// A replicated copy of one version of a range of blocks, sent by the first server to the silo that performs the
/// write. Immutable so that Orleans passes it without copying inside a silo.
/// </summary>
/// <param name="WriteId">Identifies this version across re-delegations.</param>
/// <param name="VolumeName">The volume.</param>
/// <param name="OffsetBytes">Block-aligned volume offset.</param>
/// <param name="Data">Block-aligned data, all inside one partition.</param>
/// <param name="Timestamp">The version's write timestamp from the partition-lock grain.</param>
/// <param name="ForceUnitAccess">Write through to stable media before reporting commit.</param>
/// <param name="FirstServer">The silo that keeps the other copy until commit.</param>
/// <param name="Redelegated">
/// The first server sent this copy again because its earlier target died or lost it. A client that waits for such a
/// copy (a FUA write) still says so by <paramref name="ForceUnitAccess"/>; any other re-sent copy was acknowledged
/// long ago, so the RAID worker runs it behind the copies a client is waiting for.
/// </param>
[GenerateSerializer, Immutable, Alias("cloud.ReplicatedWrite")]
public sealed record ReplicatedWrite(
    [property: Id(0)] Guid WriteId,
    [property: Id(1)] string VolumeName,
    [property: Id(2)] long OffsetBytes,
    [property: Id(3)] byte[] Data,
    [property: Id(4)] long Timestamp,
    [property: Id(5)] bool ForceUnitAccess,
    [property: Id(6)] string FirstServer,
    [property: Id(7)] bool Redelegated = false);

/// <summary>The fate of a replicated copy at the silo that performs it.</summary>
[GenerateSerializer, Alias("cloud.WriteOutcome")]
public enum WriteOutcome
{
    /// <summary>Still queued or running.</summary>
    Pending,
    /// <summary>On disk (every block not superseded).</summary>
    Committed,
    /// <summary>Dropped: a newer version of every block had committed already.</summary>
    Superseded,
    /// <summary>Dropped before it ran: the first server said a newer version covers it.</summary>
    Cancelled,
    /// <summary>This silo does not know the write (it restarted, or never got it): send it again.</summary>
    Unknown,
    /// <summary>The write failed (e.g. the volume is failed); the message says why.</summary>
    Failed,
}

/// <summary>What the performing silo reports about a replicated copy.</summary>
[GenerateSerializer, Immutable, Alias("cloud.WriteReport")]
public sealed record WriteReport(
    [property: Id(0)] WriteOutcome Outcome,
    [property: Id(1)] string Silo,
    [property: Id(2)] string? Error);

/// <summary>Where a replicated copy was accepted.</summary>
[GenerateSerializer, Immutable, Alias("cloud.DelegationReceipt")]
public sealed record DelegationReceipt(
    [property: Id(0)] string TargetSilo,
    [property: Id(1)] bool Accepted);

/// <summary>
/// The delegation unit's activation is moving to another silo; send the copy again and it will be placed anew.
/// </summary>
[GenerateSerializer, Alias("cloud.DelegationMovedException")]
public sealed class DelegationMovedException : Exception
{
    /// <summary>Creates the exception naming the silo the unit is leaving.</summary>
    public DelegationMovedException(string fromSilo) : base(
        $"the delegation unit is moving away from silo {fromSilo}; send again") { }
}
