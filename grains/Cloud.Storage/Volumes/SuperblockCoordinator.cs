using System.Collections.Concurrent;

namespace Cloud.Storage.Volumes;

/// <summary>
/// Serialises superblock updates (member failures, replacements, rebuild checkpoints) of one volume
/// across every opener. A <see cref="RaidVolume"/> holds it while it reads the current superblocks,
/// merges its own view into them and writes the next generation, so two openers never write the
/// same generation with different member tables.
/// </summary>
/// <remarks>
/// The default, <see cref="LocalSuperblockCoordinator"/>, covers openers in one process. In a cluster
/// the host supplies one that funnels a volume's updates through a single place (e.g. one grain
/// activation per volume handing out a lease). Page-blob members add an If-Match write on top
/// (<see cref="Devices.IConditionalBlockDevice"/>), so a coordinator that fails to exclude is caught there.
/// </remarks>
public interface ISuperblockCoordinator
{
    /// <summary>
    /// Waits until this caller is the only one updating <paramref name="volumeId"/>'s superblocks;
    /// disposing the result lets the next one in.
    /// </summary>
    ValueTask<IAsyncDisposable> AcquireAsync(Guid volumeId, CancellationToken cancellationToken);

    /// <summary>
    /// Makes every other opener of <paramref name="volumeId"/> adopt the update just written (a member failed or
    /// replaced, a rebuild cursor moved), and returns once they have: the updater relies on it, e.g. a rebuild step
    /// lets writers back into the stripes it covered only after this returns.
    /// </summary>
    /// <remarks>
    /// The engine calls it after it released the lease and its own update gate, so that an opener asked to re-read
    /// never waits for an update that is itself waiting for this call (two openers announcing at once would otherwise
    /// wait on each other).
    /// </remarks>
    ValueTask PublishAsync(Guid volumeId, CancellationToken cancellationToken);
}

/// <summary>
/// An in-process <see cref="ISuperblockCoordinator"/>: one async lock per volume id, shared by every opener in the
/// process.
/// </summary>
public sealed class LocalSuperblockCoordinator : ISuperblockCoordinator
{
    /// <summary>
    /// The process-wide instance, the default of <see cref="RaidVolumeOptions.SuperblockCoordinator"/>.
    /// </summary>
    public static LocalSuperblockCoordinator Shared { get; } = new();

    // One small semaphore per volume ever opened in the process; volumes are few, so they are kept.
    private readonly ConcurrentDictionary<Guid, SemaphoreSlim> _locks = new();

    /// <inheritdoc />
    public async ValueTask<IAsyncDisposable> AcquireAsync(Guid volumeId, CancellationToken cancellationToken)
    {
        SemaphoreSlim gate = _locks.GetOrAdd(volumeId, static _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        return new Releaser(gate);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Openers in one process are not told: each re-reads the superblocks on its own schedule
    /// (<see cref="RaidVolumeOptions.MemberRefreshInterval"/>) or through <see cref="RaidVolume.RefreshMembersAsync"/>.
    /// </remarks>
    public ValueTask PublishAsync(Guid volumeId, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    private sealed class Releaser(SemaphoreSlim gate) : IAsyncDisposable
    {
        private int _released;

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) gate.Release();
            return ValueTask.CompletedTask;
        }
    }
}
