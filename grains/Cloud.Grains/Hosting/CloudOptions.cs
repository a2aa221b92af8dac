using Microsoft.Extensions.Options;

namespace Cloud.Grains.Hosting;

/// <summary>Options of the Cloud grains on one silo. Bound from the <c>Cloud</c> configuration section.</summary>
public sealed class CloudOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Cloud";

    /// <summary>Default for <see cref="DataDirectory"/>.</summary>
    public const string DefaultDataDirectory = "./data";

    /// <summary>
    /// Where this silo keeps the member disk files it creates, and (localhost clustering only) the cluster state. In
    /// PostgreSQL mode it is the host's own directory: nothing in it is read by another host.
    /// </summary>
    public string DataDirectory { get; set; } = DefaultDataDirectory;

    /// <summary>
    /// The host this silo runs on (1-64 of A-Z a-z 0-9 . _ -; default: the machine name). A member disk that is a
    /// file on one host (not a page blob, not a shared block device under <c>/dev/disk/by-id/</c>) is recorded with
    /// the host that created it, and only silos of that host reach it. Silos of one machine that share a data
    /// directory share a host name.
    /// </summary>
    public string HostName { get; set; } = Environment.MachineName;

    /// <summary>
    /// This host's disk pools (<c>--disk-pool DIR</c>, repeatable; <c>Cloud:DiskPools:0</c>, ...): existing directories
    /// in which <c>volume create</c> without <c>--disk</c> places members, one per host, on the hosts with the most
    /// free space. The silo serves the members in them to the other hosts' silos. Empty: no pool.
    /// </summary>
    public string[] DiskPools { get; set; } = [];

    /// <summary><see cref="DiskTransport"/>: a TCP connection per pair of silos, read on a blocking thread.</summary>
    public const string StreamDiskTransport = "stream";

    /// <summary><see cref="DiskTransport"/>: Orleans grain calls to the serving silo's disk grain.</summary>
    public const string GrainDiskTransport = "grain";

    /// <summary>
    /// How this silo reaches another host's member disks and serves its own (<c>Cloud:DiskTransport</c>):
    /// <c>stream</c> (default), a connection of the disk service's own per pair of silos for reads and writes, with
    /// grain calls for the rest and as the fallback when a host's stream cannot be reached; or <c>grain</c>, every
    /// request a grain call. With TLS between silos the stream is off (it is not encrypted), so member I/O stays on
    /// the silos' TLS connections. docs/CLUSTER.md, "Disks across hosts".
    /// </summary>
    public string DiskTransport { get; set; } = StreamDiskTransport;

    /// <summary>
    /// The TCP port of this silo's disk stream on its silo address (<c>Cloud:DiskStreamPort</c>, 0-65535; default 0,
    /// a free port, which the silo gives callers with each member it opens for them). Give a fixed port where a
    /// firewall must allow it.
    /// </summary>
    public int DiskStreamPort { get; set; }

    /// <summary>Default for <see cref="HostDownRebuildDelay"/>: like Ceph's <c>mon_osd_down_out_interval</c>.</summary>
    public static readonly TimeSpan DefaultHostDownRebuildDelay = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long a host that holds volume members may be absent from the cluster (no live silo) before the cluster
    /// rebuilds those members onto other hosts' disk pools by itself (1 s-7 days). A host back sooner catches up
    /// instead; the delay keeps a reboot or a short outage from costing a full rebuild. Set the same value on every
    /// silo.
    /// </summary>
    public TimeSpan HostDownRebuildDelay { get; set; } = DefaultHostDownRebuildDelay;

    /// <summary>
    /// Whether a RAID-5/6 volume created over the hosts' disk pools keeps the partial parity log (default true;
    /// <c>Cloud:PartialParityLog</c>): a host killed while it writes a stripe of which it holds a member then cannot
    /// take that stripe's other chunks with it (docs/WRITE-HOLE.md). False trades that for one round trip less per
    /// partial-stripe write, as md's <c>--consistency-policy=resync</c> does. Read when a volume is created; a volume
    /// keeps what it was created with.
    /// </summary>
    public bool PartialParityLog { get; set; } = true;

    /// <summary>
    /// Whether a silo may take read leases on partitions (default true; <c>Cloud:ReadLeases</c>): a partition with no
    /// write pending or locked lets the silo that reads it serve further reads of it without a call to its lock grain,
    /// until a writer anywhere asks for it (the grain ends the lease first and waits for the reads under it). False
    /// sends every read to the lock grain, as before; mixed read-write partitions pay one call more per lease ended.
    /// </summary>
    public bool ReadLeases { get; set; } = true;

    /// <summary>
    /// Whether a silo may take write leases on partitions (default true; <c>Cloud:WriteLeases</c>): a silo that is a
    /// partition's only writer (first server and RAID worker in one) takes its timestamps, stripe locks and commits in
    /// its own memory until another silo reads or writes the partition, and its writes then make no call to the lock
    /// grain. False sends every write through the lock grain: three calls per write.
    /// </summary>
    public bool WriteLeases { get; set; } = true;

    /// <summary>Default for <see cref="LockLease"/>.</summary>
    public static readonly TimeSpan DefaultLockLease = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a stripe lock lives unless renewed (0.1 s-10 min). A dead holder's locks end after this at the latest.
    /// </summary>
    public TimeSpan LockLease { get; set; } = DefaultLockLease;

    /// <summary>Default for <see cref="LeaseCheckPeriod"/>.</summary>
    public static readonly TimeSpan DefaultLeaseCheckPeriod = TimeSpan.FromMilliseconds(250);

    /// <summary>How often a partition-lock grain looks for expired leases and dead holders (10 ms-1 min).</summary>
    public TimeSpan LeaseCheckPeriod { get; set; } = DefaultLeaseCheckPeriod;

    /// <summary>Default for <see cref="LoadPublishPeriod"/>.</summary>
    public static readonly TimeSpan DefaultLoadPublishPeriod = TimeSpan.FromMilliseconds(200);

    /// <summary>How often this silo publishes its usage (10 ms-10 s; the design asks for 100-250 ms).</summary>
    public TimeSpan LoadPublishPeriod { get; set; } = DefaultLoadPublishPeriod;

    /// <summary>Default for <see cref="LoadEntryTimeToLive"/>.</summary>
    public static readonly TimeSpan DefaultLoadEntryTimeToLive = TimeSpan.FromSeconds(2);

    /// <summary>
    /// A silo whose last published usage is older than this is not a delegation target (0.1 s-5 min).
    /// </summary>
    public TimeSpan LoadEntryTimeToLive { get; set; } = DefaultLoadEntryTimeToLive;

    /// <summary>Default for <see cref="OverloadFactor"/>.</summary>
    public const double DefaultOverloadFactor = 1.5;

    /// <summary>
    /// A silo is overloaded when its score exceeds <see cref="OverloadMinimumScore"/> plus this factor (1.0-100) times
    /// the least-loaded other silo's score with the silo's queued work added (moving would help); then the units on it
    /// are re-placed.
    /// </summary>
    public double OverloadFactor { get; set; } = DefaultOverloadFactor;

    /// <summary>Default for <see cref="OverloadMinimumScore"/>.</summary>
    public const double DefaultOverloadMinimumScore = 4.0;

    /// <summary>
    /// The margin (0-1e6) by which a silo's score must pass <see cref="OverloadFactor"/> times the alternative's
    /// before it is overloaded, so that an idle cluster does not chase noise.
    /// </summary>
    public double OverloadMinimumScore { get; set; } = DefaultOverloadMinimumScore;

    /// <summary>Default for <see cref="MergeWindow"/>.</summary>
    public static readonly TimeSpan DefaultMergeWindow = TimeSpan.Zero;

    /// <summary>
    /// How long the RAID worker holds a newly scheduled copy so that later writes of the same stripe can merge into
    /// it (0-10 s). Zero runs copies as soon as the previous batch is done; merging still happens for what queued
    /// meanwhile.
    /// </summary>
    public TimeSpan MergeWindow { get; set; } = DefaultMergeWindow;

    /// <summary>Default for <see cref="RedelegationTimeout"/>.</summary>
    public static readonly TimeSpan DefaultRedelegationTimeout = TimeSpan.FromMinutes(2);

    /// <summary>How long the first server keeps trying to get a copy committed before it gives up (1 s-1 h).</summary>
    public TimeSpan RedelegationTimeout { get; set; } = DefaultRedelegationTimeout;

    /// <summary>Default for <see cref="PartitionTargetBytes"/>.</summary>
    public const long DefaultPartitionTargetBytes = 64L * 1024 * 1024;

    /// <summary>Data bytes one partition-lock grain covers, rounded to whole stripes (1 MiB-64 GiB).</summary>
    public long PartitionTargetBytes { get; set; } = DefaultPartitionTargetBytes;

    /// <summary>Default for <see cref="MaxQueuedBytes"/>.</summary>
    public const long DefaultMaxQueuedBytes = 256L * 1024 * 1024;

    /// <summary>
    /// Bound on replicated copies a RAID worker holds in memory (1 MiB-64 GiB); beyond it, accepting waits.
    /// </summary>
    public long MaxQueuedBytes { get; set; } = DefaultMaxQueuedBytes;

    /// <summary>Default for <see cref="MaxConcurrentBatches"/>.</summary>
    public const int DefaultMaxConcurrentBatches = 16;

    /// <summary>Default for <see cref="MaxConcurrentDurableBatches"/>: an NBD connection's requests in flight.</summary>
    public const int DefaultMaxConcurrentDurableBatches = 64;

    /// <summary>Fewest <see cref="MaxConcurrentBatches"/>: above the slots kept for copies a client waits for.</summary>
    public const int MinConcurrentBatches = 8;

    /// <summary>Most <see cref="MaxConcurrentBatches"/> and <see cref="MaxConcurrentDurableBatches"/>.</summary>
    public const int MaxConcurrentBatchesLimit = 1024;

    /// <summary>
    /// Batches of one volume a RAID worker runs at once on this silo (<c>Cloud:MaxConcurrentBatches</c>, 8-1024;
    /// default 16). A batch that need not reach stable storage before it commits is disk and CPU work from start to
    /// end, and more of them at once only contend for the same cores.
    /// </summary>
    public int MaxConcurrentBatches { get; set; } = DefaultMaxConcurrentBatches;

    /// <summary>
    /// Batches of one volume a RAID worker runs at once on this silo when the ones beyond
    /// <see cref="MaxConcurrentBatches"/> are durable (<c>Cloud:MaxConcurrentDurableBatches</c>, from
    /// <see cref="MaxConcurrentBatches"/> to 1024; default 64): a durable batch (a forced-unit-access write, every
    /// write of a <c>--durable</c> volume) spends most of its time waiting for its members' flushes, which the
    /// batches waiting at the same time share, so the more of them in flight, the more writes each flush covers.
    /// </summary>
    public int MaxConcurrentDurableBatches { get; set; } = DefaultMaxConcurrentDurableBatches;

    /// <summary>Most injected disk latency (<see cref="InjectedDiskLatency"/>).</summary>
    public static readonly TimeSpan MaxInjectedDiskLatency = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Test and benchmark only (<c>Cloud:InjectedDiskLatency</c>, 0-60 s): latency added to every data-path operation
    /// of this silo's engines, which makes this silo the slow one of a load-based delegation benchmark or widens the
    /// window between an acknowledgement and its disk write in a failure test. Leave it zero in production.
    /// </summary>
    public TimeSpan InjectedDiskLatency { get; set; } = TimeSpan.Zero;

    /// <summary>Delegation settings, the <c>Cloud:Delegation</c> section.</summary>
    public DelegationOptions Delegation { get; set; } = new();

    /// <summary>
    /// The former name of <see cref="DelegationOptions.FixedTarget"/> (<c>Cloud:FixedDelegationTarget</c>), still read
    /// so that existing configurations keep their meaning; giving both with different values is an error.
    /// </summary>
    public string? FixedDelegationTarget { get; set; }

    /// <summary>The fixed delegation target in effect: <see cref="DelegationOptions.FixedTarget"/> or its former name.</summary>
    public string? EffectiveFixedDelegationTarget =>
        string.IsNullOrWhiteSpace(Delegation?.FixedTarget)
            ? string.IsNullOrWhiteSpace(FixedDelegationTarget) ? null : FixedDelegationTarget
            : Delegation.FixedTarget;

    /// <summary>Marks this silo as draining: it takes no new delegated work.</summary>
    public bool Draining { get; set; }

    /// <summary>The largest single write or read request the front end takes (4 KiB-64 MiB).</summary>
    public int MaxRequestBytes { get; set; } = DefaultMaxRequestBytes;

    /// <summary>Default for <see cref="MaxRequestBytes"/>.</summary>
    public const int DefaultMaxRequestBytes = 8 * 1024 * 1024;
}

/// <summary>How first servers choose the silo that writes a unit's copies (<c>Cloud:Delegation</c>).</summary>
public sealed class DelegationOptions
{
    /// <summary>Longest silo name <see cref="FixedTarget"/> takes.</summary>
    public const int MaxSiloNameLength = 64;

    /// <summary>
    /// When set (<c>Cloud:Delegation:FixedTarget</c>: a silo name, the <c>--name</c> it was started with, such as the
    /// multi-host bed's <c>h2</c>; 1-64 of A-Z a-z 0-9 . _ -), every delegated write goes to that silo and load is
    /// ignored: static delegation, the peer load-based delegation is measured against, and a debugging aid. Give every
    /// silo the same value. Empty: load-based delegation.
    /// </summary>
    public string? FixedTarget { get; set; }

    /// <summary>True when <paramref name="name"/> is a silo name <see cref="FixedTarget"/> takes.</summary>
    public static bool IsSiloName(string name) =>
        name.Length is >= 1 and <= MaxSiloNameLength
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');
}

/// <summary>
/// Checks <see cref="CloudOptions"/> at start, naming the bad field, its value and the allowed range.
/// </summary>
public sealed class CloudOptionsValidator : IValidateOptions<CloudOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, CloudOptions o)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(o.DataDirectory))
            errors.Add("Cloud:DataDirectory is empty; give a directory path (default ./data).");
        if (string.IsNullOrEmpty(o.HostName)
            || o.HostName.Length > 64
            || !o.HostName.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            errors.Add($"Cloud:HostName '{o.HostName}' is not allowed; use 1-64 characters of A-Z a-z 0-9 . _ -");
        errors.AddRange(Disks.DiskPools.Check(o.DiskPools));
        if (!string.Equals(o.DiskTransport, CloudOptions.StreamDiskTransport, StringComparison.OrdinalIgnoreCase)
            && !string.Equals(o.DiskTransport, CloudOptions.GrainDiskTransport, StringComparison.OrdinalIgnoreCase))
            errors.Add($"Cloud:DiskTransport '{o.DiskTransport}' is not allowed; use stream or grain.");
        if (o.DiskStreamPort is < 0 or > 65535)
            errors.Add($"Cloud:DiskStreamPort is {o.DiskStreamPort}; allowed 0-65535 (0: a free port).");
        Range(errors, nameof(o.LockLease), o.LockLease, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10));
        Range(
            errors,
            nameof(o.HostDownRebuildDelay),
            o.HostDownRebuildDelay,
            TimeSpan.FromSeconds(1),
            TimeSpan.FromDays(7));
        Range(
            errors,
            nameof(o.LeaseCheckPeriod),
            o.LeaseCheckPeriod,
            TimeSpan.FromMilliseconds(10),
            TimeSpan.FromMinutes(1));
        Range(
            errors,
            nameof(o.LoadPublishPeriod),
            o.LoadPublishPeriod,
            TimeSpan.FromMilliseconds(10),
            TimeSpan.FromSeconds(10));
        Range(
            errors,
            nameof(o.LoadEntryTimeToLive),
            o.LoadEntryTimeToLive,
            TimeSpan.FromMilliseconds(100),
            TimeSpan.FromMinutes(5));
        Range(errors, nameof(o.MergeWindow), o.MergeWindow, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        Range(
            errors,
            nameof(o.RedelegationTimeout),
            o.RedelegationTimeout,
            TimeSpan.FromSeconds(1),
            TimeSpan.FromHours(1));
        Range(errors, nameof(o.InjectedDiskLatency), o.InjectedDiskLatency, TimeSpan.Zero, CloudOptions.MaxInjectedDiskLatency);
        CheckFixedTarget(errors, o);
        if (!(o.OverloadFactor >= 1.0 && o.OverloadFactor <= 100))
            errors.Add($"Cloud:OverloadFactor is {o.OverloadFactor}; allowed 1.0-100.");
        if (!(o.OverloadMinimumScore >= 0 && o.OverloadMinimumScore <= 1e6))
            errors.Add($"Cloud:OverloadMinimumScore is {o.OverloadMinimumScore}; allowed 0-1000000.");
        if (o.PartitionTargetBytes < 1L << 20 || o.PartitionTargetBytes > 64L << 30)
            errors.Add($"Cloud:PartitionTargetBytes is {o.PartitionTargetBytes}; allowed 1 MiB-64 GiB.");
        if (o.MaxQueuedBytes < 1L << 20 || o.MaxQueuedBytes > 64L << 30)
            errors.Add($"Cloud:MaxQueuedBytes is {o.MaxQueuedBytes}; allowed 1 MiB-64 GiB.");
        if (o.MaxConcurrentBatches < CloudOptions.MinConcurrentBatches
            || o.MaxConcurrentBatches > CloudOptions.MaxConcurrentBatchesLimit)
            errors.Add($"Cloud:MaxConcurrentBatches is {o.MaxConcurrentBatches}; allowed "
                + $"{CloudOptions.MinConcurrentBatches}-{CloudOptions.MaxConcurrentBatchesLimit}.");
        else if (o.MaxConcurrentDurableBatches < o.MaxConcurrentBatches
                 || o.MaxConcurrentDurableBatches > CloudOptions.MaxConcurrentBatchesLimit)
            errors.Add($"Cloud:MaxConcurrentDurableBatches is {o.MaxConcurrentDurableBatches}; allowed from "
                + $"Cloud:MaxConcurrentBatches ({o.MaxConcurrentBatches}) to {CloudOptions.MaxConcurrentBatchesLimit}.");
        if (o.MaxRequestBytes < 4096 || o.MaxRequestBytes > 64 << 20 || o.MaxRequestBytes % 4096 != 0)
            errors.Add($"Cloud:MaxRequestBytes is {o.MaxRequestBytes}; allowed a multiple of 4096 in 4 KiB-64 MiB.");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void CheckFixedTarget(List<string> errors, CloudOptions o)
    {
        foreach (var (field, value) in new[]
        {
            ("Delegation:FixedTarget", o.Delegation?.FixedTarget), (nameof(o.FixedDelegationTarget), o.FixedDelegationTarget),
        })
        {
            if (!string.IsNullOrWhiteSpace(value) && !DelegationOptions.IsSiloName(value))
                errors.Add(
                    $"Cloud:{field} '{value}' is not a silo name; give the --name of a silo (1-{DelegationOptions.MaxSiloNameLength} of A-Z a-z 0-9 . _ -), or leave it empty for load-based delegation.");
        }
        if (!string.IsNullOrWhiteSpace(o.Delegation?.FixedTarget) && !string.IsNullOrWhiteSpace(o.FixedDelegationTarget)
            && o.Delegation.FixedTarget != o.FixedDelegationTarget)
            errors.Add(
                $"Cloud:Delegation:FixedTarget '{o.Delegation.FixedTarget}' and its former name Cloud:FixedDelegationTarget '{o.FixedDelegationTarget}' disagree; give one.");
    }

    private static void Range(List<string> errors, string field, TimeSpan value, TimeSpan min, TimeSpan max)
    {
        if (value < min || value > max)
            errors.Add($"Cloud:{field} is {value}; allowed {min}-{max}.");
    }
}
