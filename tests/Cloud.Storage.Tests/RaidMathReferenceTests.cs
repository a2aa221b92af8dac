using Cloud.Storage.Parity;

namespace Cloud.Storage.Tests;

public class RaidMathReferenceTests
{
    [Theory]
    [InlineData(4, 1)]
    [InlineData(4, 2)]
    [InlineData(7, 2)]
    public void Reconstruct_EveryAllowedMissingSet_RestoresOriginal(int dataCount, int parityCount)
    {
        const int seed = 1234;
        var rng = new Random(seed);
        int n = dataCount + parityCount;
        var members = new Memory<byte>[n];
        for (int i = 0; i < n; i++) members[i] = new byte[64];
        for (int d = 0; d < dataCount; d++) rng.NextBytes(members[d].Span);
        var data = new ReadOnlyMemory<byte>[dataCount];
        for (int d = 0; d < dataCount; d++) data[d] = members[d];
        if (parityCount == 1) RaidMath.ComputeP(data, members[dataCount].Span);
        else RaidMath.ComputePQ(data, members[dataCount].Span, members[dataCount + 1].Span);
        byte[][] original = members.Select(m => m.ToArray()).ToArray();

        for (int a = 0; a < n; a++)
        for (int b = parityCount == 2 ? a + 1 : n; b <= n; b++)
        {
            int[] missing = b < n ? [a, b] : [a];
            foreach (int m in missing) members[m].Span.Fill(0xEE);
            RaidMath.Reconstruct(members, parityCount, missing);
            for (int i = 0; i < n; i++)
                Assert.True(original[i].AsSpan().SequenceEqual(members[i].Span), $"seed {seed}: member {i} differs after rebuilding [{string.Join(',', missing)}]");
        }
    }
}
