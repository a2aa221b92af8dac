using Cloud.Storage.Parity;

namespace Cloud.Storage.Tests.Parity;

/// <summary>Seeded random stripes and the comparisons the parity tests share.</summary>
internal static class Stripe
{
    /// <summary>
    /// The seed for a test: PARITY_TEST_SEED from the environment when set (to replay a failure or
    /// explore), else the test's fixed default so that CI runs are repeatable.
    /// </summary>
    public static int Seed(int defaultSeed) =>
        int.TryParse(Environment.GetEnvironmentVariable("PARITY_TEST_SEED"), out var seed) ? seed : defaultSeed;

    /// <summary>Lengths that exercise every path: empty, shorter than a register, odd tails, several tiles.</summary>
    public static readonly int[] Lengths = [0, 1, 7, 63, 64, 65, 129, 4096, 4096 + 64 + 1, 2 * 16384 + 1000 + 3];

    /// <summary>dataCount random data chunks followed by parityCount zeroed parity chunks.</summary>
    public static Memory<byte>[] Random(Random rng, int dataCount, int parityCount, int lengthBytes)
    {
        var members = new Memory<byte>[dataCount + parityCount];
        for (var i = 0; i < members.Length; i++)
        {
            // Offset each buffer by a random amount so the kernels also meet unaligned addresses.
            var skew = rng.Next(0, 64);
            members[i] = new byte[lengthBytes + skew].AsMemory(skew, lengthBytes);
            if (i < dataCount) rng.NextBytes(members[i].Span);
        }
        return members;
    }

    public static ReadOnlyMemory<byte>[] Data(Memory<byte>[] members, int dataCount)
    {
        var data = new ReadOnlyMemory<byte>[dataCount];
        for (var d = 0; d < dataCount; d++) data[d] = members[d];
        return data;
    }

    /// <summary>Fills in P (and Q) with the reference implementation.</summary>
    public static void ReferenceParity(Memory<byte>[] members, int dataCount, int parityCount)
    {
        ReadOnlyMemory<byte>[] data = Data(members, dataCount);
        if (parityCount == 1) RaidMathReference.ComputeP(data, members[dataCount].Span);
        else RaidMathReference.ComputePQ(data, members[dataCount].Span, members[dataCount + 1].Span);
    }

    public static byte[][] Copy(Memory<byte>[] members) => [.. members.Select(m => m.ToArray())];

    /// <summary>Asserts byte equality and, on a mismatch, names the first differing offset and the context.</summary>
    public static void Equal(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string context)
    {
        Assert.True(expected.Length == actual.Length, $"{context}: length {actual.Length}, expected {expected.Length}");
        var at = expected.CommonPrefixLength(actual);
        Assert.True(at == expected.Length, at == expected.Length ? "" :
            $"{context}: first difference at byte {at} of {expected.Length}: got 0x{actual[at]:X2}, expected 0x{expected[at]:X2}");
    }

    /// <summary>Every vector width this machine supports, in bytes (theory parameters must be public types).</summary>
    public static TheoryData<int> Widths()
    {
        var data = new TheoryData<int>();
        foreach (VectorWidth width in VectorWidths.Supported) data.Add((int)width);
        return data;
    }

    public static TheoryData<int, int> WidthsAndParity()
    {
        var data = new TheoryData<int, int>();
        foreach (VectorWidth width in VectorWidths.Supported)
        {
            data.Add((int)width, 1);
            data.Add((int)width, 2);
        }
        return data;
    }
}
