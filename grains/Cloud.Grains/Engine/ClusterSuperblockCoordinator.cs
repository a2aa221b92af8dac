using Cloud.Grains.Abstractions;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Cloud.Storage.Volumes;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Cloud.Grains.Engine;

/// <summary>
/// The engine's <see cref="ISuperblockCoordinator"/> in the cluster: a volume's superblock updates on any silo take
/// the lease of that volume's <see cref="ISuperblockLeaseGrain"/>. After an update the engine publishes it: every live
/// silo's RAID worker, this silo's included, re-reads the member table in every engine of the volume it has open,
/// opening or closing, before the update returns, so that a member failed here is not used by another silo for the
/// next write, and a stripe a rebuild step has passed is not written anywhere without the new member.
/// </summary>
/// <remarks>
/// A re-read never waits for a publication: the engine publishes after it let go of its update gate and the lease,
/// and a re-read needs only the gate. So every silo re-reads at once when asked, even while it is updating or
/// publishing itself; there is no "skip" or "later" answer that would leave a silo writing by the old table after the
/// updater trusted the new one.
/// </remarks>
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

    /// <summary>Pause before asking a silo again to re-read the superblocks.</summary>
    public static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(200);

    private readonly string _holder = silo.SiloAddress.ToParsableString();
    private readonly ILogger _logger = logger;

    /// <inheritdoc />
    public async ValueTask<IAsyncDisposable> AcquireAsync(Guid volumeId, CancellationToken cancellationToken)
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

    /// <inheritdoc />
    /// <remarks>
    /// This silo is asked too: besides the engine that wrote the update, it may have another engine of the volume
    /// (one still opening, or one still draining its writes while it closes).
    /// </remarks>
    public async ValueTask PublishAsync(Guid volumeId, CancellationToken cancellationToken)
    {
        var names = membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active && !m.SiloAddress.Equals(silo.SiloAddress))
            .Select(m => m.Name)
            .Append(silo.Name)
            .ToList();
        await Task.WhenAll(names.Select(name => RefreshUntilDoneAsync(volumeId, name)))
            .WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Asks one silo to re-read the superblocks, again while it is still an active member (or is this silo) and the
    /// announcement is younger than <see cref="Lease"/>: an update (a rebuild step's cursor above all) is trusted by its
    /// announcer once this returns, and a silo that missed it would keep writing by the old superblocks. A silo that
    /// leaves the membership meanwhile reads them afresh when it comes back.
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
                var stillActive = name == silo.Name
                    || membership.CurrentSnapshot.Members.Values.Any(m => m.Name == name && m.Status == SiloStatus.Active);
                if (!stillActive || DateTimeOffset.UtcNow - started > Lease) return;
                await Task.Delay(RetryPause).ConfigureAwait(false);
            }
        }
    }

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
            try { await grain.ReleaseAsync(token).ConfigureAwait(false); }
            catch (Exception ex) { LogReleaseFailed(owner._logger, volumeId, ex); }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {VolumeId}: silo {Silo} did not re-read the superblocks")]
    private static partial void LogRefreshFailed(ILogger logger, Guid volumeId, string silo, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {VolumeId}: releasing the superblock lease failed (it expires)")]
    private static partial void LogReleaseFailed(ILogger logger, Guid volumeId, Exception exception);
}
