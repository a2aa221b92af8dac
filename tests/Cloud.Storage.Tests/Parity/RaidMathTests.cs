using Cloud.Storage.Parity;

namespace Cloud.Storage.Tests.Parity;

/// <summary>
/// Seeded property tests of the vectorised <see cref="RaidMath"/> against the byte-at-a-time
/// <see cref="RaidMathReference"/>, at every vector width this machine supports.
/// </summary>
public class RaidMathTests
{
    private static readonly int[] DataCounts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16];

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void ComputeP_AnyGeometryAndLength_MatchesReference(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(101);
        var rng = new Random(seed);
        foreach (var dataCount in DataCounts)
        foreach (var length in Stripe.Lengths)
        {
            Memory<byte>[] members = Stripe.Random(rng, dataCount, 1, length);
            var expected = new byte[length];
            RaidMathReference.ComputeP(Stripe.Data(members, dataCount), expected);
            members[dataCount].Span.Fill(0xA5);
            RaidMath.ComputeP(Stripe.Data(members, dataCount), members[dataCount].Span, width);
            Stripe.Equal(
                expected, members[dataCount].Span, $"seed {seed}, width {width}, {dataCount} data, {length} bytes: P");
        }
    }

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void ComputePQ_AnyGeometryAndLength_MatchesReference(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(202);
        var rng = new Random(seed);
        foreach (var dataCount in DataCounts)
        foreach (var length in Stripe.Lengths)
        {
            Memory<byte>[] members = Stripe.Random(rng, dataCount, 2, length);
            var expectedP = new byte[length];
            var expectedQ = new byte[length];
            RaidMathReference.ComputePQ(Stripe.Data(members, dataCount), expectedP, expectedQ);
            members[dataCount].Span.Fill(0xA5);
            members[dataCount + 1].Span.Fill(0x5A);
            RaidMath.ComputePQ(
                Stripe.Data(members, dataCount), members[dataCount].Span, members[dataCount + 1].Span, width);
            var context = $"seed {seed}, width {width}, {dataCount} data, {length} bytes";
            Stripe.Equal(expectedP, members[dataCount].Span, context + ": P");
            Stripe.Equal(expectedQ, members[dataCount + 1].Span, context + ": Q");
        }
    }

    [Theory]
    [MemberData(nameof(Stripe.WidthsAndParity), MemberType = typeof(Stripe))]
    public void Reconstruct_EveryAllowedMissingSet_RestoresByteIdenticalMembers(int widthBytes, int parityCount)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(303 + parityCount);
        var rng = new Random(seed);
        int[] lengths = [1, 65, 4096 + 64 + 1, 2 * 16384 + 1000 + 3];
        foreach (var dataCount in DataCounts)
        foreach (var length in lengths)
        {
            var n = dataCount + parityCount;
            Memory<byte>[] members = Stripe.Random(rng, dataCount, parityCount, length);
            Stripe.ReferenceParity(members, dataCount, parityCount);
            var original = Stripe.Copy(members);
            // Every single member, and for RAID-6 every pair: data+data, data+P, data+Q and P+Q.
            for (var a = 0; a < n; a++)
            for (var b = parityCount == 2 ? a + 1 : n; b <= n; b++)
            {
                int[] missing = b < n ? [a, b] : [a];
                // What was in a lost member's buffer must not matter.
                foreach (var m in missing) rng.NextBytes(members[m].Span);
                RaidMath.Reconstruct(members, parityCount, missing, width);
                for (var i = 0; i < n; i++)
                    Stripe.Equal(original[i], members[i].Span,
                        $"seed {seed}, width {width}, {dataCount}+{parityCount}, {length} bytes, missing [{string.Join(',', missing)}]: member {i}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void Reconstruct_MissingListedInEitherOrder_GivesSameResult(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(404);
        var rng = new Random(seed);
        Memory<byte>[] members = Stripe.Random(rng, 6, 2, 4096);
        Stripe.ReferenceParity(members, 6, 2);
        var original = Stripe.Copy(members);
        members[1].Span.Clear();
        members[4].Span.Clear();
        RaidMath.Reconstruct(members, 2, [4, 1], width);
        for (var i = 0; i < members.Length; i++) Stripe.Equal(original[i], members[i].Span, $"seed {seed}: member {i}");
    }

    [Theory]
    [MemberData(nameof(Stripe.WidthsAndParity), MemberType = typeof(Stripe))]
    public void ApplyDelta_AnyMemberAndLength_EqualsRecomputingParity(int widthBytes, int parityCount)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(505 + parityCount);
        var rng = new Random(seed);
        foreach (var dataCount in DataCounts)
        foreach (var length in Stripe.Lengths)
        {
            Memory<byte>[] members = Stripe.Random(rng, dataCount, parityCount, length);
            Stripe.ReferenceParity(members, dataCount, parityCount);
            var index = rng.Next(dataCount);
            var oldData = members[index].ToArray();
            rng.NextBytes(members[index].Span);
            Span<byte> q = parityCount == 2 ? members[dataCount + 1].Span : [];
            RaidMath.ApplyDelta(index, oldData, members[index].Span, members[dataCount].Span, q, width);

            Memory<byte>[] recomputed = [.. members.Select(m => (Memory<byte>)m.ToArray())];
            Stripe.ReferenceParity(recomputed, dataCount, parityCount);
            for (var i = dataCount; i < members.Length; i++)
                Stripe.Equal(recomputed[i].Span, members[i].Span,
                    $"seed {seed}, width {width}, {dataCount}+{parityCount}, {length} bytes, member {index} rewritten: parity {i - dataCount}");
        }
    }

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void ApplyDelta_HighestMemberIndex_UsesItsCoefficient(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        // Member 254 has coefficient g^254 = 2^-1; a delta there must match recomputation over 255 members.
        var seed = Stripe.Seed(606);
        var rng = new Random(seed);
        const int dataCount = RaidMath.MaxDataMembers;
        Memory<byte>[] members = Stripe.Random(rng, dataCount, 2, 300);
        Stripe.ReferenceParity(members, dataCount, 2);
        var oldData = members[dataCount - 1].ToArray();
        rng.NextBytes(members[dataCount - 1].Span);
        RaidMath.ApplyDelta(
            dataCount - 1,
            oldData,
            members[dataCount - 1].Span,
            members[dataCount].Span,
            members[dataCount + 1].Span,
            width);
        byte[] expectedQ = new byte[300], expectedP = new byte[300];
        RaidMathReference.ComputePQ(Stripe.Data(members, dataCount), expectedP, expectedQ);
        Stripe.Equal(expectedP, members[dataCount].Span, $"seed {seed}: P");
        Stripe.Equal(expectedQ, members[dataCount + 1].Span, $"seed {seed}: Q");
    }

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void Reconstruct_WidestStripe_RestoresFirstAndLastDataMembers(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(707);
        var rng = new Random(seed);
        const int dataCount = RaidMath.MaxDataMembers;
        Memory<byte>[] members = Stripe.Random(rng, dataCount, 2, 200);
        Stripe.ReferenceParity(members, dataCount, 2);
        var original = Stripe.Copy(members);
        foreach (var missing in
                 new[] { new[] { 0, dataCount - 1 }, [0, dataCount], [dataCount - 1, dataCount + 1], [100, 101] })
        {
            foreach (var m in missing) members[m].Span.Clear();
            RaidMath.Reconstruct(members, 2, missing, width);
            for (var i = 0; i < members.Length; i++)
                Stripe.Equal(
                    original[i], members[i].Span, $"seed {seed}, missing [{string.Join(',', missing)}]: member {i}");
        }
    }

    [Fact]
    public void PublicApi_RunsAtTheBestWidth_AndAgreesWithReference()
    {
        var seed = Stripe.Seed(808);
        var rng = new Random(seed);
        Memory<byte>[] members = Stripe.Random(rng, 4, 2, 65536);
        RaidMath.ComputePQ(Stripe.Data(members, 4), members[4].Span, members[5].Span);
        var p = new byte[65536];
        var q = new byte[65536];
        RaidMathReference.ComputePQ(Stripe.Data(members, 4), p, q);
        Stripe.Equal(p, members[4].Span, $"seed {seed}, best width {VectorWidths.Best}: P");
        Stripe.Equal(q, members[5].Span, $"seed {seed}, best width {VectorWidths.Best}: Q");
    }
}
