using Microsoft.Extensions.Options;

namespace Cloud.Grains.Hosting;

/// <summary>
/// Settings of this silo that may change while it runs: draining (an operator takes the silo out of delegation before
/// maintenance) and injected disk latency (a slow silo for benchmarks and load tests). Start values come from
/// <see cref="CloudOptions"/>.
/// </summary>
public sealed class SiloRuntimeSettings(IOptions<CloudOptions> options)
{
    private long _latencyTicks = options.Value.InjectedDiskLatency.Ticks;
    private volatile bool _draining = options.Value.Draining;

    /// <summary>When true this silo takes no new delegated work; its current units move elsewhere.</summary>
    public bool Draining
    {
        get => _draining;
        set => _draining = value;
    }

    /// <summary>
    /// When set, every delegated write goes to this silo (by name) and load is ignored: static delegation, the
    /// peer that load-based delegation is measured against, and a debugging aid. Set it on every silo.
    /// </summary>
    /// <remarks>Starts as <c>Cloud:Delegation:FixedTarget</c>; benchmarks and tests in one process change it here.</remarks>
    public string? FixedDelegationTarget { get; set; } = options.Value.EffectiveFixedDelegationTarget;

    /// <summary>
    /// Test and benchmark only: latency added to each data-path operation of this silo's engines (0-60 s). Starts as
    /// <c>Cloud:InjectedDiskLatency</c>.
    /// </summary>
    public TimeSpan InjectedDiskLatency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _latencyTicks));
        set
        {
            if (value < TimeSpan.Zero || value > CloudOptions.MaxInjectedDiskLatency)
                throw new ArgumentOutOfRangeException(nameof(value), value, "injected disk latency must be 0-60 s");
            Interlocked.Exchange(ref _latencyTicks, value.Ticks);
        }
    }
}
