using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;

namespace Cloud.Grains.Delegation;

/// <summary>Holds the latest usage of every silo; soft state, rebuilt within one period if it moves.</summary>
[Reentrant]
internal sealed class LoadTableGrain(IOptions<CloudOptions> options, TimeProvider time) : Grain, ILoadTableGrain
{
    private readonly Dictionary<string, SiloLoad> _entries = new(StringComparer.Ordinal);

    public Task<ImmutableArray<SiloLoad>> PublishAsync(SiloLoad load)
    {
        _entries[load.SiloAddress] = load;
        return Task.FromResult(Fresh());
    }

    public Task<ClusterStatus> GetStatusAsync()
    {
        var fresh = Fresh();
        var live = fresh.Where(e => !e.Draining).ToList();
        var mean = live.Count == 0 ? 0 : live.Average(e => e.Score);
        return Task.FromResult(new ClusterStatus(fresh, mean));
    }

    private ImmutableArray<SiloLoad> Fresh()
    {
        // Entries of silos that stopped publishing are dropped here, so a dead silo leaves every table within the TTL.
        var cutoff = time.GetUtcNow() - options.Value.LoadEntryTimeToLive;
        var builder = ImmutableArray.CreateBuilder<SiloLoad>(_entries.Count);
        List<string>? stale = null;
        foreach (var (key, e) in _entries)
        {
            if (e.PublishedUtc >= cutoff) builder.Add(e);
            else (stale ??= []).Add(key);
        }
        if (stale is not null) foreach (var key in stale) _entries.Remove(key);
        builder.Sort((a, b) => string.CompareOrdinal(a.SiloName, b.SiloName));
        return builder.ToImmutable();
    }
}
