using System.Diagnostics;

namespace Cloud.Bench.Parity;

/// <summary>
/// A paired companion to <see cref="ParityBenchmarks"/> for a shared, busy machine: instead of
/// measuring one contender after the other (where a neighbour's build can land on either side),
/// it alternates short blocks of ours and ISA-L's many times, so both see the same load, and
/// reports the ratio of their medians and of their fastest blocks.
/// Run with <c>dotnet run -c Release --project bench/Cloud.Bench -- paired</c>.
/// </summary>
public static class PairedParityRun
{
    /// <summary>Alternations of the two contenders per scenario.</summary>
    public const int RoundCount = 400;

    /// <summary>
    /// Calls per timed block; a 64 KiB 4+2 call takes microseconds, so a block is well above timer resolution.
    /// </summary>
    public const int CallsPerBlock = 64;

    /// <summary>Untimed calls per contender before measuring, so tiered JIT has produced its final code.</summary>
    public const int WarmupCalls = 20_000;

    public static void Run(TextWriter output)
    {
        output.WriteLine(
            $"64 KiB chunks, {RoundCount} alternating rounds of {CallsPerBlock} calls; speed = ISA-L time / our time (1.00 = as fast as ISA-L).");
        foreach (var alignmentBytes in new[] { 64, 4096 })
        {
            output.WriteLine($"buffers aligned to {alignmentBytes} bytes");
            Run(output, alignmentBytes);
        }
    }

    private static void Run(TextWriter output, int alignmentBytes)
    {
        var bench = new ParityBenchmarks { BufferAlignmentBytes = alignmentBytes };
        bench.Setup();
        try
        {
            output.WriteLine(
                $"{"scenario",-26} {"ISA-L ns",10} {"ours ns",10} {"speed (median)",15} {"speed (best)",13} {"ours B/call",12}");
            (string Name, Action Peer, Action Ours)[] scenarios =
            [
                ("P 4+1 (target 0.95)", () => bench.IsaLXorGen(), bench.OursComputeP),
                ("P+Q 4+2 (target 0.85)", () => bench.IsaLPqGen(), bench.OursComputePQ),
                ("recover 1 of 4+1", () => bench.IsaLRecover(), bench.OursRecoverRaid5),
                ("recover 1 of 4+2", () => bench.IsaLRecover(), bench.OursRecoverRaid6),
            ];
            // Warm every scenario before timing any, so that no measurement overlaps the JIT
            // compiling the next scenario's code on the other core.
            foreach ((_, Action peer, Action ours) in scenarios)
            {
                for (var i = 0; i < WarmupCalls; i++)
                {
                    peer();
                    ours();
                }
            }
            foreach ((var name, Action peer, Action ours) in scenarios) Compare(output, name, peer, ours);
        }
        finally
        {
            bench.Cleanup();
        }
    }

    private static void Compare(TextWriter output, string scenario, Action peer, Action ours)
    {
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < CallsPerBlock; i++) ours();
        var oursBytesPerCall = (GC.GetAllocatedBytesForCurrentThread() - allocatedBefore) / (double)CallsPerBlock;

        var peerBlocks = new double[RoundCount];
        var oursBlocks = new double[RoundCount];
        for (var round = 0; round < RoundCount; round++)
        {
            // Swap who goes first each round so neither always runs on a cache the other warmed.
            if (round % 2 == 0)
            {
                peerBlocks[round] = TimeBlock(peer);
                oursBlocks[round] = TimeBlock(ours);
            }
            else
            {
                oursBlocks[round] = TimeBlock(ours);
                peerBlocks[round] = TimeBlock(peer);
            }
        }
        Array.Sort(peerBlocks);
        Array.Sort(oursBlocks);
        double peerMedian = peerBlocks[RoundCount / 2], oursMedian = oursBlocks[RoundCount / 2];
        output.WriteLine(
            $"{scenario,-26} {peerMedian,10:F0} {oursMedian,10:F0} {peerMedian / oursMedian,15:F2} {peerBlocks[0] / oursBlocks[0],13:F2} {oursBytesPerCall,12:F0}");
    }

    private static double TimeBlock(Action action)
    {
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; i < CallsPerBlock; i++) action();
        return Stopwatch.GetElapsedTime(start).TotalNanoseconds / CallsPerBlock;
    }
}
