using Cloud.Storage.Parity;

namespace Cloud.Storage.Tests.Parity;

/// <summary>
/// The reference implementation is the oracle of the vector paths, so it is checked on its own first.
/// </summary>
public class RaidMathReferenceTests
{
    [Theory]
    [InlineData(4, 1)]
    [InlineData(4, 2)]
    [InlineData(7, 2)]
    public void Reconstruct_EveryAllowedMissingSet_RestoresOriginal(int dataCount, int parityCount)
    {
        var seed = Stripe.Seed(1234);
        var rng = new Random(seed);
        var n = dataCount + parityCount;
        Memory<byte>[] members = Stripe.Random(rng, dataCount, parityCount, 64);
        Stripe.ReferenceParity(members, dataCount, parityCount);
        var original = Stripe.Copy(members);

        for (var a = 0; a < n; a++)
        for (var b = parityCount == 2 ? a + 1 : n; b <= n; b++)
        {
            int[] missing = b < n ? [a, b] : [a];
            foreach (var m in missing) members[m].Span.Fill(0xEE);
            RaidMathReference.Reconstruct(members, parityCount, missing);
            for (var i = 0; i < n; i++)
                Stripe.Equal(
                    original[i],
                    members[i].Span,
                    $"seed {seed}: member {i} after rebuilding [{string.Join(',', missing)}]");
        }
    }

    [Fact]
    public void ComputePQ_SmallStripe_MatchesHandComputedQ()
    {
        // Q = D0 ^ 2*D1 ^ 4*D2 in GF(2^8)/0x11D; 2*0x80 = 0x100 ^ 0x11D = 0x1D, 4*0x80 = 2*0x1D = 0x3A.
        ReadOnlyMemory<byte>[] data = [new byte[] { 0x01, 0x80 }, new byte[] { 0x01, 0x80 }, new byte[] { 0x01, 0x80 }];
        var p = new byte[2];
        var q = new byte[2];
        RaidMathReference.ComputePQ(data, p, q);
        Assert.Equal(new byte[] { 0x01, 0x80 }, p);
        Assert.Equal(new byte[] { 0x01 ^ 0x02 ^ 0x04, 0x80 ^ 0x1D ^ 0x3A }, q);
    }
}
