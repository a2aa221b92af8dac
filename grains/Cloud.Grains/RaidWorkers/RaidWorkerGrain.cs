using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Engine;
using Cloud.Grains.FirstServers;
using Cloud.Grains.Locks;
using Orleans.Concurrency;
using Orleans.Placement;
using Orleans.Runtime;

namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// The RAID worker of one silo: bound to the silo named by its key and never moved. Reentrant, because its calls
/// only hand work to the silo's <see cref="WriteScheduler"/>, <see cref="OpenVolumeCache"/> and
/// <see cref="RaidMaintenance"/> and wait, and a long wait must not hold up the next copy.
/// </summary>
[SiloBoundPlacement, Immovable, Reentrant]
internal sealed class RaidWorkerGrain(
    WriteScheduler scheduler,
    OpenVolumeCache volumes,
    RaidMaintenance maintenance,
    ILocalSiloDetails silo,
    HeldLocks heldLocks,
    ReadLeases readLeases,
    WriteLeases writeLeases,
    VersionsInFlight inFlight,
    FirstServerWrites firstServer) : Grain, IRaidWorkerGrain
{
    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var key = this.GetPrimaryKeyString();
        if (key != silo.Name)
            throw new InvalidOperationException(
                $"RAID worker '{key}' activated on silo '{silo.Name}'; placement must bind it to its own silo");
        return Task.CompletedTask;
    }

    public Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write)
        => EngineErrors.Guard(() => scheduler.AcceptAsync(write));
    public Task<WriteReport> WaitCommittedAsync(Guid writeId, TimeSpan maxWait)
        => scheduler.WaitAsync(writeId, maxWait);
    public Task<int> CancelSupersededAsync(
        string volumeName,
        long offsetBytes,
        long lengthBytes,
        long newerTimestamp) =>
        EngineErrors.Guard(() => scheduler.CancelSupersededAsync(volumeName, offsetBytes, lengthBytes, newerTimestamp));
    public Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes)
        => EngineErrors.Guard(() => volumes.ReadAsync(volumeName, offsetBytes, lengthBytes));
    public Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes)
        => EngineErrors.Guard(() => maintenance.TrimAsync(volumeName, offsetBytes, lengthBytes));
    public Task FlushAsync(string volumeName) => EngineErrors.Guard(() => scheduler.FlushAsync(volumeName));
    public Task FlushEveryMemberAsync(string volumeName) =>
        EngineErrors.Guard(() => scheduler.FlushEveryMemberAsync(volumeName));
    public Task CloseVolumeAsync(string volumeName) => EngineErrors.Guard(() => maintenance.CloseAsync(volumeName));
    public Task<bool> HasOpenAsync(string volumeName) => Task.FromResult(volumes.HasOpen(volumeName));
    public Task<VolumeStatus> GetVolumeStatusAsync(string volumeName)
        => EngineErrors.Guard(() => maintenance.StatusAsync(volumeName, null));
    public Task FailMemberAsync(string volumeName, int index, string reason)
        => EngineErrors.Guard(() => maintenance.FailMemberAsync(volumeName, index, reason));
    public Task ReplaceMemberAsync(string volumeName, int index, string path, string? host)
        => EngineErrors.Guard(() => maintenance.ReplaceMemberAsync(volumeName, index, path, host));

    public Task RebuildAsync(string volumeName)
    {
        var volume = GrainFactory.GetGrain<IVolumeGrain>(volumeName);
        var progress = new RebuildReporter(volume);
        return EngineErrors.Guard(async () =>
        {
            await maintenance.RebuildAsync(volumeName, progress);
            // The reports above are one-way and thinned out; the last one, with the bytes moved in all, is awaited so
            // that the volume grain has it before the rebuild is recorded as done.
            if (progress.Last is { } last) await volume.ReportRebuildAsync(last);
        });
    }

    public Task<ScrubResult> ScrubAsync(string volumeName, bool repair)
        => EngineErrors.Guard(() => maintenance.ScrubAsync(volumeName, repair));
    public Task<int> GetQueueDepthAsync() => Task.FromResult(scheduler.QueueDepth);
    public Task RefreshMembersAsync(Guid volumeId)
        => EngineErrors.Guard(() => maintenance.RefreshMembersAsync(volumeId));
    public Task<long> RecoverWriterSlotAsync(int writerSlot)
        => EngineErrors.Guard(() => maintenance.RecoverWriterSlotAsync(writerSlot));
    public async Task<PartitionClaims> ReclaimAsync(string partitionKey, long leasesBelow)
    {
        await readLeases.RevokeAsync(partitionKey, leasesBelow - 1);
        // A write lease of an earlier activation ends too, without waiting for the work under it: its locks held now
        // are claimed like any other (and released at the new activation when they end here), its pending versions
        // with the first server's.
        var (leased, leasedVersions) = writeLeases.EndForReclaim(partitionKey, leasesBelow - 1);
        return new PartitionClaims(
            heldLocks.For(partitionKey).AddRange(leased), firstServer.ReportHeld(partitionKey).AddRange(leasedVersions));
    }

    public Task<ImmutableArray<long>> VersionsInFlightAsync(string partitionKey, ImmutableArray<long> timestamps)
        => Task.FromResult(inFlight.Of(partitionKey, timestamps));

    public Task<WriteLeaseReturn> EndWriteLeaseAsync(string partitionKey, long id) =>
        writeLeases.EndAsync(partitionKey, id);

    public Task RevokeReadLeaseAsync(string partitionKey, long upTo) => readLeases.RevokeAsync(partitionKey, upTo);

    /// <summary>Forwards rebuild progress to the volume grain, at most every 1 % so the grain is not flooded.</summary>
    private sealed class RebuildReporter(IVolumeGrain volume) : IProgress<(long Done, long Total, long BytesMoved)>
    {
        private long _lastPercent = -1;

        /// <summary>The latest progress, as a status.</summary>
        public RebuildStatus? Last { get; private set; }

        public void Report((long Done, long Total, long BytesMoved) value)
        {
            var status = new RebuildStatus(value.Done < value.Total, value.Done, value.Total, null, value.BytesMoved);
            Last = status;
            var percent = value.Total == 0 ? 100 : value.Done * 100 / value.Total;
            if (Interlocked.Exchange(ref _lastPercent, percent) == percent) return;
            _ = volume.ReportRebuildAsync(status);
        }
    }
}
