using System.Collections.Immutable;

namespace Cloud.Grains.Disks;

/// <summary>A replacement the automatic rebuild has started: member <c>Index</c> of a volume, from a lost host onto
/// another host's pool.</summary>
[GenerateSerializer, Immutable, Alias("cloud.HostDownReplacement")]
public sealed record HostDownReplacement(
    [property: Id(0)] string Volume,
    [property: Id(1)] Guid VolumeId,
    [property: Id(2)] int Index,
    [property: Id(3)] string FromHost,
    [property: Id(4)] string ToHost,
    [property: Id(5)] DateTimeOffset StartedUtc);

/// <summary>What the automatic rebuild sees and does: each absent host since when, and the replacement under way.</summary>
[GenerateSerializer, Immutable, Alias("cloud.HostDownRebuildStatus")]
public sealed record HostDownRebuildStatus(
    [property: Id(0)] ImmutableArray<string> AbsentHosts,
    [property: Id(1)] ImmutableArray<DateTimeOffset> AbsentSinceUtc,
    [property: Id(2)] HostDownReplacement? Current,
    [property: Id(3)] int Completed);

/// <summary>
/// The cluster's one automatic rebuild of lost hosts (key 0): every silo asks it to check the hosts every
/// <see cref="HostDownRebuildPlan.CheckInterval"/>, and it rebuilds the members of a host absent for longer than
/// <see cref="Hosting.CloudOptions.HostDownRebuildDelay"/> onto other hosts' disk pools, one volume at a time.
/// </summary>
[Alias("cloud.IHostDownRebuildGrain")]
public interface IHostDownRebuildGrain : IGrainWithIntegerKey
{
    /// <summary>Starts a check of the hosts (and the rebuild it calls for) unless one is running; returns at once.</summary>
    [Alias("Check")]
    Task CheckAsync();

    /// <summary>The absent hosts and the replacement under way.</summary>
    [Alias("Status")]
    Task<HostDownRebuildStatus> GetStatusAsync();
}
