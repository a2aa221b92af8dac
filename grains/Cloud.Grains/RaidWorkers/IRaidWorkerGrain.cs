using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Locks;
using Orleans.Concurrency;

namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// The RAID worker of one silo (key: the silo's stable name), bound to it by placement and immovable. It opens the
/// volumes' engines on its silo, schedules replicated copies (merging writes of one stripe), performs them under
/// the partition locks, and serves reads, degraded reads, rebuild and scrub.
/// </summary>
[Alias("cloud.IRaidWorkerGrain")]
public interface IRaidWorkerGrain : IGrainWithStringKey
{
    /// <summary>Takes a replicated copy into the schedule. Returns once this silo holds it in memory.</summary>
    [Alias("Accept")]
    Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write);

    /// <summary>Waits up to <paramref name="maxWait"/> for the copy's fate.</summary>
    [Alias("WaitCommitted")]
    Task<WriteReport> WaitCommittedAsync(Guid writeId, TimeSpan maxWait);

    /// <summary>
    /// Drops scheduled copies of these blocks older than <paramref name="newerTimestamp"/> that are wholly covered by
    /// it.
    /// </summary>
    [Alias("CancelSuperseded")]
    Task<int> CancelSupersededAsync(string volumeName, long offsetBytes, long lengthBytes, long newerTimestamp);

    /// <summary>
    /// Reads from disk (reconstructing from redundancy when a member is gone). The caller holds a shared lock.
    /// </summary>
    [Alias("Read")]
    Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes);

    /// <summary>Discards a range under exclusive stripe locks, after every earlier pending write of it.</summary>
    [Alias("Trim")]
    Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes);

    /// <summary>Flushes this silo's open engine of the volume (fsync of its members).</summary>
    [Alias("Flush")]
    Task FlushAsync(string volumeName);

    /// <summary>
    /// Opens the volume here if it is not open and flushes every member, including what other silos wrote to them (a
    /// silo that died leaves its completed writes in the kernel's cache): see <see cref="WriteScheduler.FlushEveryMemberAsync"/>.
    /// </summary>
    [Alias("FlushEveryMember")]
    Task FlushEveryMemberAsync(string volumeName);

    /// <summary>Drains the volume's queue and closes its engine here (before delete or a membership change).</summary>
    [Alias("Close")]
    Task CloseVolumeAsync(string volumeName);

    /// <summary>
    /// Whether this silo has the volume open or opening: it then recovers its own intent slot's marks there itself.
    /// </summary>
    [Alias("HasOpen")]
    Task<bool> HasOpenAsync(string volumeName);

    /// <summary>The volume's status as this silo's engine sees it.</summary>
    [Alias("Status")]
    Task<VolumeStatus> GetVolumeStatusAsync(string volumeName);

    /// <summary>Fails a member in this silo's engine.</summary>
    [Alias("FailMember")]
    Task FailMemberAsync(string volumeName, int index, string reason);

    /// <summary>
    /// Replaces a member with a fresh disk at <paramref name="path"/> in this silo's engine: a file of
    /// <paramref name="host"/> made by that host's disk service when it is another host, else a disk made here.
    /// </summary>
    [Alias("ReplaceMember")]
    Task ReplaceMemberAsync(string volumeName, int index, string path, string? host);

    /// <summary>Rebuilds the volume here, reporting progress to the volume grain.</summary>
    [Alias("Rebuild")]
    [ResponseTimeout("1.00:00:00")]
    Task RebuildAsync(string volumeName);

    /// <summary>Scrubs the volume here.</summary>
    [Alias("Scrub")]
    [ResponseTimeout("01:00:00")]
    Task<ScrubResult> ScrubAsync(string volumeName, bool repair);

    /// <summary>Number of copies queued or running (for status and tests).</summary>
    [Alias("QueueDepth")]
    Task<int> GetQueueDepthAsync();

    /// <summary>
    /// Re-reads the superblocks of the volume <paramref name="volumeId"/> if it is open here, so that a member
    /// another silo failed, replaced or rebuilt is seen at once (sent by the silo that changed them).
    /// </summary>
    [Alias("RefreshMembers"), AlwaysInterleave]
    Task RefreshMembersAsync(Guid volumeId);

    /// <summary>
    /// Resyncs the stripes that the dead silo writing through intent slot <paramref name="writerSlot"/> may have left
    /// mid-update, in every volume, holding each volume's stripe locks exclusively meanwhile; returns the stripes
    /// resynced.
    /// </summary>
    [Alias("RecoverWriterSlot")]
    Task<long> RecoverWriterSlotAsync(int writerSlot);

    /// <summary>
    /// The lock grants this silo holds on the partition <paramref name="partitionKey"/> and the versions of it this
    /// silo's first server holds uncommitted, for a partition-lock grain that is reactivating after its silo died.
    /// Every read lease an earlier activation gave this silo on the partition (ids below
    /// <paramref name="leasesBelow"/>, the new activation's first token) ends first, once the reads under it are done.
    /// Interleaved with everything: the grain serves nothing until the answer comes, and the calls this worker is
    /// busy with may be waiting for that grain.
    /// </summary>
    [Alias("Reclaim"), AlwaysInterleave]
    Task<PartitionClaims> ReclaimAsync(string partitionKey, long leasesBelow);

    /// <summary>
    /// Of <paramref name="timestamps"/>, the versions of partition <paramref name="partitionKey"/> this silo took and
    /// has not finished with (<see cref="Locks.VersionsInFlight"/>), for a partition-lock grain whose read waits long
    /// on them: one this silo no longer has, it will never write nor settle.
    /// </summary>
    [Alias("VersionsInFlight"), AlwaysInterleave]
    Task<ImmutableArray<long>> VersionsInFlightAsync(string partitionKey, ImmutableArray<long> timestamps);

    /// <summary>
    /// Ends this silo's read lease on the partition <paramref name="partitionKey"/> if its id is at most
    /// <paramref name="upTo"/>, and returns once no read under it is running; a grant of that lease still on its way
    /// here is refused when it arrives (<see cref="ReadLeases"/>).
    /// </summary>
    [Alias("RevokeReadLease"), AlwaysInterleave]
    Task RevokeReadLeaseAsync(string partitionKey, long upTo);

    /// <summary>
    /// Ends this silo's write lease <paramref name="id"/> on the partition <paramref name="partitionKey"/>
    /// (<see cref="WriteLeases"/>): no new work starts under it, the batches and reads running under it finish, and
    /// what the partition-lock grain must know comes back. A lease this silo does not hold returns nothing.
    /// </summary>
    [Alias("EndWriteLease"), AlwaysInterleave]
    Task<WriteLeaseReturn> EndWriteLeaseAsync(string partitionKey, long id);
}
