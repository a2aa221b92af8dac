using System.Collections.Concurrent;
using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Cloud.Storage.Volumes;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Cloud.Grains.Engine;

/// <summary>
/// The engine's <see cref="ISuperblockCoordinator"/> in the cluster: a volume's superblock updates on any silo take
/// the lease of that volume's <see cref="ISuperblockLeaseGrain"/>. After an update the silo tells every other live
/// silo's RAID worker to re-read the member table before the update returns, so that a member failed here is not
/// used by another silo for the next write.
/// </summary>
internal sealed partial class ClusterSuperblockCoordinator(
    IGrainFactory grains,
    ILocalSiloDetails silo,
    IClusterMembershipService membership,
    ILogger<ClusterSuperblockCoordinator> logger) : ISuperblockCoordinator
{
    /// <summary>
    /// A grant's lease: far above the few superblock writes an update makes, short enough to outlive a dead holder
    /// briefly.
    /// </summary>
    public static readonly TimeSpan Lease = TimeSpan.FromSeconds(30);

    /// <summary>How long one acquire call waits in the grain before asking again.</summary>
    public static readonly TimeSpan AcquireWait = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Bound on waiting for another silo to re-read its members; a silo that does not answer is dying.
    /// </summary>
    public static readonly TimeSpan RefreshTimeout = TimeSpan.FromSeconds(10);

    private readonly string _holder = silo.SiloAddress.ToParsableString();
    private readonly ILogger _logger = logger;

    // Per volume: updates of this silo waiting for or holding the lease (their own re-read will see others' changes),
    // and updates telling the others (a refresh here must not wait for them: two such silos would wait on each other).
    private readonly ConcurrentDictionary<Guid, int> _updating = new();
    private readonly ConcurrentDictionary<Guid, int> _announcing = new();

    /// <summary>What a refresh request for <paramref name="volumeId"/> should do on this silo now.</summary>
    internal RefreshMode RefreshModeFor(Guid volumeId) =>
        _updating.GetValueOrDefault(volumeId) > 0 ? RefreshMode.Skip
        : _announcing.GetValueOrDefault(volumeId) > 0 ? RefreshMode.Background
        : RefreshMode.Now;

    /// <inheritdoc />
    public async ValueTask<IAsyncDisposable> AcquireAsync(Guid volumeId, CancellationToken cancellationToken)
    {
        _updating.AddOrUpdate(volumeId, 1, (_, n) => n + 1);
        try
        {
            var grain = grains.GetGrain<ISuperblockLeaseGrain>(volumeId);
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var token = await grain.AcquireAsync(
                    _holder, Lease, AcquireWait).WaitAsync(cancellationToken).ConfigureAwait(false);
                if (token != 0) return new Grant(this, grain, volumeId, token);
            }
        }
        catch
        {
            _updating.AddOrUpdate(volumeId, 0, (_, n) => n - 1);
            throw;
        }
    }

    private async Task AnnounceAsync(Guid volumeId)
    {
        var others = membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active && !m.SiloAddress.Equals(silo.SiloAddress))
            .Select(m => m.Name).ToList();
        await Task.WhenAll(others.Select(name => RefreshUntilDoneAsync(volumeId, name))).ConfigureAwait(false);
    }

    /// <summary>
    /// Asks one silo to re-read the superblocks, again while it is still an active member and the announcement is
    /// younger than <see cref="Lease"/>: an update (a rebuild step's cursor above all) is trusted by its announcer once
    /// this returns, and a silo that missed it would keep writing by the old superblocks. A silo that leaves the
    /// membership meanwhile reads them afresh when it comes back.
    /// </summary>
    private async Task RefreshUntilDoneAsync(Guid volumeId, string name)
    {
        var started = DateTimeOffset.UtcNow;
        while (true)
        {
            try
            {
                await grains.GetGrain<IRaidWorkerGrain>(name).RefreshMembersAsync(volumeId)
                    .WaitAsync(RefreshTimeout).ConfigureAwait(false);
                return;
            }
            catch (Exception ex)
            {
                LogRefreshFailed(_logger, volumeId, name, ex);
                var stillActive = membership.CurrentSnapshot.Members.Values
                    .Any(m => m.Name == name && m.Status == SiloStatus.Active);
                if (!stillActive || DateTimeOffset.UtcNow - started > Lease) return;
                await Task.Delay(RetryPause).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Pause before asking a silo again to re-read the superblocks.</summary>
    public static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(200);

    private sealed class Grant(
        ClusterSuperblockCoordinator owner,
        ISuperblockLeaseGrain grain,
        Guid volumeId,
        long token) : IAsyncDisposable
    {
        private int _disposed;

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            owner._announcing.AddOrUpdate(volumeId, 1, (_, n) => n + 1);
            owner._updating.AddOrUpdate(volumeId, 0, (_, n) => n - 1);
            try
            {
                try { await grain.ReleaseAsync(token).ConfigureAwait(false); }
                catch (Exception ex) { LogReleaseFailed(owner._logger, volumeId, ex); }
                await owner.AnnounceAsync(volumeId).ConfigureAwait(false);
            }
            finally { owner._announcing.AddOrUpdate(volumeId, 0, (_, n) => n - 1); }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {VolumeId}: silo {Silo} did not re-read the superblocks")]
    private static partial void LogRefreshFailed(ILogger logger, Guid volumeId, string silo, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {VolumeId}: releasing the superblock lease failed (it expires)")]
    private static partial void LogReleaseFailed(ILogger logger, Guid volumeId, Exception exception);
}

/// <summary>What a silo does with a request to re-read a volume's superblocks.</summary>
internal enum RefreshMode
{
    /// <summary>Re-read now and answer after.</summary>
    Now,

    /// <summary>This silo is about to update them itself, which re-reads first.</summary>
    Skip,

    /// <summary>
    /// This silo is telling the others of its own update: re-read after that, without making the caller wait.
    /// </summary>
    Background,
}
