namespace Cloud.Grains.Tests;

/// <summary>
/// One operation on a register, with the times it was invoked and completed (one clock for every silo).
/// </summary>
public sealed record RegisterOp(bool IsWrite, long Value, long InvokedTicks, long CompletedTicks, string Who);

/// <summary>
/// A Wing-Gong style linearizability checker for a single register: searches for an order of the operations that
/// respects real time (an operation completed before another was invoked comes first) in which every read returns
/// the latest write before it. Memoised on (set of linearized operations, register value), like Knossos' WGL.
/// </summary>
public static class RegisterChecker
{
    /// <summary>Most operations per register; the set of linearized operations is a 64-bit mask.</summary>
    public const int MaxOps = 64;

    public static bool IsLinearizable(IReadOnlyList<RegisterOp> ops, long initial, out string explanation)
    {
        if (ops.Count > MaxOps)
            throw new ArgumentException($"{ops.Count} operations exceed the checker's bound of {MaxOps}");
        var full = ops.Count == 64 ? ulong.MaxValue : (1UL << ops.Count) - 1;
        var seen = new HashSet<(ulong, long)>();
        var deepest = 0UL;
        if (Search(0, initial))
        {
            explanation = "";
            return true;
        }
        var stuck = Enumerable.Range(0, ops.Count).Where(i => (deepest & (1UL << i)) == 0).Select(i => ops[i]);
        explanation = $"no linearization; after {ulong.PopCount(deepest)} ops none of these can go next: {string.Join("; ", stuck.Take(6))}";
        return false;

        bool Search(ulong done, long value)
        {
            if (done == full) return true;
            if (!seen.Add((done, value))) return false;
            if (ulong.PopCount(done) > ulong.PopCount(deepest)) deepest = done;
            // Only an operation invoked before every pending operation completed may be linearized next.
            var horizon = long.MaxValue;
            for (var i = 0; i < ops.Count; i++)
                if ((done & (1UL << i)) == 0) horizon = Math.Min(horizon, ops[i].CompletedTicks);
            for (var i = 0; i < ops.Count; i++)
            {
                if ((done & (1UL << i)) != 0 || ops[i].InvokedTicks > horizon) continue;
                var op = ops[i];
                if (op.IsWrite)
                {
                    if (Search(done | (1UL << i), op.Value)) return true;
                }
                else if (op.Value == value && Search(done | (1UL << i), value))
                {
                    return true;
                }
            }
            return false;
        }
    }
}
