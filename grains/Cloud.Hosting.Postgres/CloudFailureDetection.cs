using Orleans.Configuration;

namespace Cloud.Hosting.Postgres;

/// <summary>
/// Cloud's membership settings for declaring a crashed silo dead within
/// <see cref="TargetDeclarationTime"/>, instead of the ~15 s that Orleans' defaults take.
/// </summary>
/// <remarks>
/// A crashed silo is noticed by its peers' probes. Each peer probes every <see cref="ProbeTimeout"/>;
/// after <see cref="NumMissedProbesLimit"/> missed probes it votes the silo suspect in the membership
/// table, and <see cref="NumVotesForDeathDeclaration"/> votes (or every other active silo, when fewer
/// remain) declare it dead. Worst case: MaxProbeTimeout x NumMissedProbesLimit plus one table round
/// trip per vote, about 4.5 s with these values. A process killed by the kernel closes its sockets, so
/// probes to it usually fail at once rather than timing out, and the death comes sooner.
/// </remarks>
public static class CloudFailureDetection
{
    /// <summary>The bound the settings are chosen to meet: crash to "declared dead" in the membership table.</summary>
    public static readonly TimeSpan TargetDeclarationTime = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The initial probe timeout and period (Orleans default 5 s). Orleans adapts it per silo between
    /// <see cref="MinProbeTimeout"/> and <see cref="MaxProbeTimeout"/>.
    /// </summary>
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);

    /// <summary>The shortest adaptive probe timeout (Orleans default: half of ProbeTimeout).</summary>
    public static readonly TimeSpan MinProbeTimeout = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// The longest adaptive probe timeout (Orleans default: four times ProbeTimeout, which alone would exceed the
    /// target).
    /// </summary>
    public static readonly TimeSpan MaxProbeTimeout = TimeSpan.FromMilliseconds(1500);

    /// <summary>
    /// Missed probes before a peer votes a silo suspect (Orleans default 3). Two tolerates one lost probe.
    /// </summary>
    public const int NumMissedProbesLimit = 2;

    /// <summary>
    /// Suspect votes needed to declare a silo dead (Orleans default 2, kept: one peer alone should not kill a silo when
    /// others can see it).
    /// </summary>
    public const int NumVotesForDeathDeclaration = 2;

    /// <summary>
    /// How long a suspect vote counts (Orleans default 2 min). Votes older than a few probe rounds no longer describe
    /// the silo.
    /// </summary>
    public static readonly TimeSpan DeathVoteExpirationTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// How often a silo writes its IAmAlive time to the table (Orleans default 30 s); joining silos use it to skip dead
    /// entries.
    /// </summary>
    public static readonly TimeSpan IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How often a silo re-reads the membership table (Orleans default 60 s); gossip usually brings changes sooner.
    /// </summary>
    public static readonly TimeSpan TableRefreshTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether a silo that sees itself unhealthy stretches its probe timeouts (Orleans default true).
    /// Off: stretching would push detection past the target, and Cloud prefers a quick, fenced
    /// takeover to waiting on a slow silo.
    /// </summary>
    public const bool ExtendProbeTimeoutDuringDegradation = false;

    /// <summary>Copies Cloud's failure-detection settings onto <paramref name="options"/>.</summary>
    public static void Apply(ClusterMembershipOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ProbeTimeout = ProbeTimeout;
        options.MinProbeTimeout = MinProbeTimeout;
        options.MaxProbeTimeout = MaxProbeTimeout;
        options.NumMissedProbesLimit = NumMissedProbesLimit;
        options.NumVotesForDeathDeclaration = NumVotesForDeathDeclaration;
        options.DeathVoteExpirationTimeout = DeathVoteExpirationTimeout;
        options.IAmAliveTablePublishTimeout = IAmAliveTablePublishTimeout;
        options.TableRefreshTimeout = TableRefreshTimeout;
        options.ExtendProbeTimeoutDuringDegradation = ExtendProbeTimeoutDuringDegradation;
    }
}
