using Cloud.Grains.Abstractions;
using Cloud.Grains.Delegation;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace Cloud.Grains.Disks;

/// <summary>The automatic rebuild's persisted state: the replacement under way, so that it resumes after a restart.</summary>
[GenerateSerializer, Alias("cloud.HostDownRebuildState")]
internal sealed class HostDownRebuildState
{
    /// <summary>The replacement started and not yet rebuilt, or null.</summary>
    [Id(0)]
    public HostDownReplacement? Current { get; set; }

    /// <summary>Replacements rebuilt to the end since the cluster began.</summary>
    [Id(1)]
    public int Completed { get; set; }
}

/// <summary>
/// Rebuilds the members of a host gone for good onto other hosts' disk pools (issue 15, "permanent loss"): when a
/// host that holds members of spread volumes has had no live silo for <see cref="CloudOptions.HostDownRebuildDelay"/>,
/// each such member is replaced, through the volume grain as <c>cloudctl disk replace</c> does, by a new file on the
/// eligible host with the most free pool space, and rebuilt; one volume at a time, so that rebuilds do not compete for
/// the surviving disks. The replacement under way is grain state: written (with its ETag) before the replacement starts,
/// so that a second activation cannot start the same one, and read again after a restart, which finishes it.
/// </summary>
/// <remarks>
/// The clock of an absent host is this activation's: after the grain moves to another silo the delay counts again from
/// the first check there, which errs on the side of waiting. A host back before the delay keeps its members (the
/// engine's catch-up resyncs them).
/// </remarks>
internal sealed partial class HostDownRebuildGrain(
    [PersistentState(CloudGrainStorage.HostDownRebuildState, CloudGrainStorage.Name)]
    IPersistentState<HostDownRebuildState> state,
    LoadTable loadTable,
    IClusterMembershipService membership,
    IVolumeStoreFactory factory,
    MemberPlacement placement,
    IOptions<CloudOptions> options,
    TimeProvider time,
    ILogger<HostDownRebuildGrain> logger) : Grain, IHostDownRebuildGrain
{
    /// <summary>How often a running rebuild's progress is looked at.</summary>
    public static readonly TimeSpan ProgressPollInterval = TimeSpan.FromSeconds(1);

    private readonly HostDownRebuildPlan _plan = new();
    private readonly HashSet<(string Volume, int Index)> _waitingReported = [];
    private Task? _pass;

    private TimeSpan Delay => options.Value.HostDownRebuildDelay;

    public Task CheckAsync()
    {
        if (_pass is not { IsCompleted: false }) _pass = PassAsync();
        return Task.CompletedTask;
    }

    public Task<HostDownRebuildStatus> GetStatusAsync()
    {
        var absent = _plan.AbsentSince.OrderBy(h => h.Key, StringComparer.Ordinal).ToList();
        return Task.FromResult(new HostDownRebuildStatus(
            [.. absent.Select(h => h.Key)], [.. absent.Select(h => h.Value)], state.State.Current, state.State.Completed));
    }

    /// <summary>One check: the hosts' clocks, then the replacement under way or the next one due.</summary>
    private async Task PassAsync()
    {
        try
        {
            var catalog = GrainFactory.GetGrain<IVolumeCatalogGrain>(0);
            var volumes = await catalog.ListAsync();
            var now = time.GetUtcNow();
            foreach (var host in _plan.Observe(volumes, IsPresent, now)) LogHostBack(logger, host);
            if (state.State.Current is { } current)
            {
                await FinishAsync(current);
                return;
            }
            foreach (var (volume, index, host) in _plan.Due(volumes, now, Delay))
            {
                if (await StartAsync(volume, index, host, now) is { } started)
                {
                    await FinishAsync(started);
                    return;
                }
            }
        }
        catch (Exception ex)
        {
            // The replacement under way (if any) stays recorded; the next check goes on with it.
            LogPassFailed(logger, ex);
            if (ex is Orleans.Storage.InconsistentStateException) DeactivateOnIdle();
        }
    }

    /// <summary>
    /// A host is present while any of its silos is: fresh in the load table, or active in the membership (a silo
    /// too busy to publish its load for a moment has not left).
    /// </summary>
    private bool IsPresent(string host)
    {
        var snapshot = membership.CurrentSnapshot;
        foreach (var entry in loadTable.Entries)
        {
            if (entry.HostName != host) continue;
            if (loadTable.Find(entry.SiloAddress) is not null) return true;
            try
            {
                if (snapshot.GetSiloStatus(SiloAddress.FromParsableString(entry.SiloAddress)) == SiloStatus.Active)
                    return true;
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException or IndexOutOfRangeException)
            {
                // Not an address: only the load table's freshness speaks for it.
            }
        }
        return false;
    }

    /// <summary>
    /// Starts replacing member <paramref name="index"/> of <paramref name="volume"/> (on the lost <paramref name="host"/>)
    /// by a new member on the eligible host with the most free pool space; null, with a log line and the reason in the
    /// volume's rebuild status, when no host is eligible.
    /// </summary>
    private async Task<HostDownReplacement?> StartAsync(VolumeInfo volume, int index, string host, DateTimeOffset now)
    {
        var grain = GrainFactory.GetGrain<IVolumeGrain>(volume.Name);
        var sizeBytes = MemberSizeBytes(volume);
        var hosts = placement.PoolHosts();
        if (MemberPlacement.ChooseReplacementHost(hosts, volume, index, sizeBytes) is not { } target)
        {
            var reason = MemberPlacement.NoEligibleHost(volume, index, hosts, sizeBytes);
            if (_waitingReported.Add((volume.Name, index))) LogNoHost(logger, volume.Name, index, host, reason);
            await grain.ReportRebuildWaitingAsync(
                $"automatic rebuild waits: host '{host}' is absent for more than {Delay}, and {reason}");
            return null;
        }
        _waitingReported.Remove((volume.Name, index));
        var status = await grain.ShowAsync();
        if (status.Disks.FirstOrDefault(d => d.Index == index) is { State: DiskState.Active })
            await grain.FailDiskAsync(index, $"host '{host}' absent for more than {Delay}");
        var job = new HostDownReplacement(volume.Name, volume.VolumeId, index, host, target, now);
        // Recorded before anything changes, with the state's ETag: an activation that read an older state (a second
        // one, during a membership change) fails this write and starts nothing.
        state.State.Current = job;
        await state.WriteStateAsync();
        LogStart(logger, volume.Name, index, host, target, Delay);
        await grain.ReplaceDiskOnHostAsync(index, target);
        return job;
    }

    /// <summary>
    /// Rebuilds the replacement <paramref name="job"/> to the end (doing the replacement again when a restart cut it
    /// short before the catalog recorded it), then forgets it.
    /// </summary>
    private async Task FinishAsync(HostDownReplacement job)
    {
        var catalog = GrainFactory.GetGrain<IVolumeCatalogGrain>(0);
        var grain = GrainFactory.GetGrain<IVolumeGrain>(job.Volume);
        var info = await catalog.GetAsync(job.Volume);
        if (info is not null && info.VolumeId == job.VolumeId)
        {
            if (info.MemberHost(job.Index) == job.FromHost)
            {
                // The replacement did not reach the catalog: do it again, or choose afresh when the chosen host
                // cannot take it any more.
                var hosts = placement.PoolHosts();
                if (!hosts.Any(h => h.Host == job.ToHost)
                    || MemberPlacement.HoldsOtherMember(info, job.Index, job.ToHost) is not null)
                {
                    state.State.Current = null;
                    await state.WriteStateAsync();
                    return;
                }
                await grain.ReplaceDiskOnHostAsync(job.Index, job.ToHost);
            }
            await grain.StartRebuildAsync();
            RebuildStatus? rebuild;
            do
            {
                await Task.Delay(ProgressPollInterval);
                rebuild = await grain.GetRebuildAsync();
            }
            while (rebuild is { Running: true });
            var member = (await grain.ShowAsync()).Disks.FirstOrDefault(d => d.Index == job.Index);
            if (member is not { State: DiskState.Active })
                throw new CloudStorageException(
                    $"volume '{job.Volume}': the rebuild of member {job.Index} on host '{job.ToHost}' did not finish ({rebuild?.Error ?? "the volume grain restarted"}); it is resumed at the next check");
            LogDone(logger, job.Volume, job.Index, job.ToHost);
            state.State.Completed++;
        }
        // A volume deleted meanwhile has nothing left to rebuild.
        state.State.Current = null;
        await state.WriteStateAsync();
    }

    private long MemberSizeBytes(VolumeInfo v) =>
        factory.MemberSizeBytes(
            new VolumeSpec(v.Name, v.SizeBytes, v.Level, v.DiskCount, v.ChunkSizeBytes, v.Durable),
            MemberPlacement.IsSpread(v));

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: member {Index} on host {Host}, absent for more than {Delay}, is rebuilt onto host {Target}")]
    private static partial void LogStart(ILogger logger, string volume, int index, string host, string target, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: member {Index} rebuilt onto host {Target}")]
    private static partial void LogDone(ILogger logger, string volume, int index, string target);

    [LoggerMessage(Level = LogLevel.Error, Message = "Volume {Volume}: member {Index} on lost host {Host} cannot be rebuilt: {Reason}")]
    private static partial void LogNoHost(ILogger logger, string volume, int index, string host, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Host {Host} is back before the rebuild delay; its members catch up")]
    private static partial void LogHostBack(ILogger logger, string host);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Automatic rebuild of lost hosts: a check failed; the next check goes on")]
    private static partial void LogPassFailed(ILogger logger, Exception exception);
}
