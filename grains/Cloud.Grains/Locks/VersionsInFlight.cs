using System.Collections.Concurrent;
using System.Collections.Immutable;

namespace Cloud.Grains.Locks;

/// <summary>
/// The versions this silo took a timestamp for and has not finished with: from the grant until the copy is committed,
/// given up or settled (a first server's write, a sector write's edge block, a trim). A partition-lock grain whose read
/// has waited long on a version asks the silo that took it (<see cref="IPartitionLockGrain"/>'s orphan check): a
/// version the silo no longer has can never be written by it, and waiting for it would only hold the read until the
/// re-delegation timeout. Such orphans come from a grant whose answer was lost (the call timed out and was retried, so
/// the first server wrote under the next timestamp), a settle that failed, or a reclaim that heard of a copy from a
/// silo whose settle then reached another activation.
/// </summary>
public sealed class VersionsInFlight
{
    private readonly ConcurrentDictionary<(string Partition, long Timestamp), byte> _versions = new();

    /// <summary>Marks a version taken: it stays so until <see cref="End"/>.</summary>
    public void Begin(string partitionKey, long timestamp) => _versions[(partitionKey, timestamp)] = 0;

    /// <summary>Marks a version finished with (committed, given up or settled); a second call does nothing.</summary>
    public void End(string partitionKey, long timestamp) => _versions.TryRemove((partitionKey, timestamp), out _);

    /// <summary>Of <paramref name="timestamps"/>, those of the partition this silo still has.</summary>
    public ImmutableArray<long> Of(string partitionKey, ImmutableArray<long> timestamps)
    {
        if (timestamps.IsDefaultOrEmpty) return [];
        var held = ImmutableArray.CreateBuilder<long>();
        foreach (var ts in timestamps)
            if (_versions.ContainsKey((partitionKey, ts))) held.Add(ts);
        return held.ToImmutable();
    }

    /// <summary>How many versions this silo has now (for tests and status).</summary>
    public int Count => _versions.Count;
}
