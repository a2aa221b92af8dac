using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Placement;
using Orleans.Concurrency;
using Orleans.Placement;
using Orleans.Runtime;

namespace Cloud.Grains.Workers;

/// <summary>
/// The RAID worker of one silo: bound to the silo named by its key and never moved. Reentrant, because its calls
/// only hand work to <see cref="RaidWorkerService"/> and wait, and a long wait must not hold up the next copy.
/// </summary>
[SiloBoundPlacement, Immovable, Reentrant]
internal sealed class RaidWorkerGrain(RaidWorkerService service, ILocalSiloDetails silo, ClusterSuperblockCoordinator coordinator) : Grain, IRaidWorkerGrain
{
    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var key = this.GetPrimaryKeyString();
        if (key != silo.Name)
            throw new InvalidOperationException($"RAID worker '{key}' activated on silo '{silo.Name}'; placement must bind it to its own silo");
        return Task.CompletedTask;
    }

    public Task<DelegationReceipt> AcceptAsync(ReplicatedWrite write) => EngineErrors.Guard(() => service.AcceptAsync(write));
    public Task<WriteReport> WaitCommittedAsync(Guid writeId, TimeSpan maxWait) => service.WaitAsync(writeId, maxWait);
    public Task<int> CancelSupersededAsync(string volumeName, long offsetBytes, long lengthBytes, long newerTimestamp) =>
        EngineErrors.Guard(() => service.CancelSupersededAsync(volumeName, offsetBytes, lengthBytes, newerTimestamp));
    public Task<byte[]> ReadAsync(string volumeName, long offsetBytes, int lengthBytes) => EngineErrors.Guard(() => service.ReadAsync(volumeName, offsetBytes, lengthBytes));
    public Task TrimAsync(string volumeName, long offsetBytes, long lengthBytes) => EngineErrors.Guard(() => service.TrimAsync(volumeName, offsetBytes, lengthBytes));
    public Task FlushAsync(string volumeName) => EngineErrors.Guard(() => service.FlushAsync(volumeName));
    public Task CloseVolumeAsync(string volumeName) => EngineErrors.Guard(() => service.CloseAsync(volumeName));
    public Task<VolumeStatus> GetVolumeStatusAsync(string volumeName) => EngineErrors.Guard(() => service.StatusAsync(volumeName, null));
    public Task FailMemberAsync(string volumeName, int index, string reason) => EngineErrors.Guard(() => service.FailMemberAsync(volumeName, index, reason));
    public Task ReplaceMemberAsync(string volumeName, int index, string path) => EngineErrors.Guard(() => service.ReplaceMemberAsync(volumeName, index, path));

    public Task RebuildAsync(string volumeName)
    {
        var volume = GrainFactory.GetGrain<IVolumeGrain>(volumeName);
        var progress = new RebuildReporter(volume);
        return EngineErrors.Guard(() => service.RebuildAsync(volumeName, progress));
    }

    public Task<ScrubResult> ScrubAsync(string volumeName, bool repair) => EngineErrors.Guard(() => service.ScrubAsync(volumeName, repair));
    public Task<int> GetQueueDepthAsync() => Task.FromResult(service.QueueDepth);
    public Task RefreshMembersAsync(Guid volumeId) => EngineErrors.Guard(() => service.RefreshMembersAsync(volumeId, coordinator.RefreshModeFor(volumeId)));
    public Task<long> RecoverWriterSlotAsync(int writerSlot) => EngineErrors.Guard(() => service.RecoverWriterSlotAsync(writerSlot));

    /// <summary>Forwards rebuild progress to the volume grain, at most every 1 % so the grain is not flooded.</summary>
    private sealed class RebuildReporter(IVolumeGrain volume) : IProgress<(long Done, long Total)>
    {
        private long _lastPercent = -1;

        public void Report((long Done, long Total) value)
        {
            var percent = value.Total == 0 ? 100 : value.Done * 100 / value.Total;
            if (Interlocked.Exchange(ref _lastPercent, percent) == percent) return;
            _ = volume.ReportRebuildAsync(new RebuildStatus(value.Done < value.Total, value.Done, value.Total, null));
        }
    }
}
