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

    /// <summary>Latency added to each data-path operation of this silo's engines (0-10 s).</summary>
    public TimeSpan InjectedDiskLatency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _latencyTicks));
        set
        {
            if (value < TimeSpan.Zero || value > TimeSpan.FromSeconds(10))
                throw new ArgumentOutOfRangeException(nameof(value), value, "injected disk latency must be 0-10 s");
            Interlocked.Exchange(ref _latencyTicks, value.Ticks);
        }
    }
}
