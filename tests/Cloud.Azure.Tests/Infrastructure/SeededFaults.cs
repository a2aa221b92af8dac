using System.Collections.Concurrent;

namespace Cloud.Azure.Tests.Infrastructure;

/// <summary>
/// Seeded per-request faults that the SDK's retries can always recover from: each distinct request
/// (method, target, range) fails its first 0 to <see cref="MaxFaultsPerRequest"/> tries, with a fault type
/// drawn from the seed, and then passes. The choice depends only on the seed and the request, not on timing,
/// so a printed seed replays the same faults.
/// </summary>
public sealed class SeededFaults(int seed)
{
    /// <summary>
    /// Most consecutive faults one request meets; the device under test must allow more retries than this.
    /// </summary>
    public const int MaxFaultsPerRequest = 2;

    private static readonly ProxyFault[] Faults =
        [
            ProxyFault.ServerBusy503, ProxyFault.InternalError500, ProxyFault.DropBeforeForward,
            ProxyFault.DropMidResponse, ProxyFault.LoseResponse,
        ];

    private readonly ConcurrentDictionary<string, int> _tries = new();

    public int Seed => seed;

    public ProxyFault Decide(ProxyRequest request)
    {
        var key = $"{request.Method} {request.Target} {request.Range}";
        var attempt = _tries.AddOrUpdate(key, 0, (_, n) => n + 1);
        var h = Hash(key);
        var faults = (int)(h % (MaxFaultsPerRequest + 1));
        return attempt < faults ? Faults[Hash($"{key}#{attempt}") % (ulong)Faults.Length] : ProxyFault.None;
    }

    // FNV-1a over the seed and the text: stable across processes, unlike string.GetHashCode.
    private ulong Hash(string text)
    {
        var h = 14695981039346656037UL ^ (ulong)(uint)seed;
        foreach (var c in text)
        {
            h = (h ^ c) * 1099511628211UL;
        }

        return h ^ (h >> 29);
    }
}
