using Cloud.Storage.Parity;

namespace Cloud.Storage.Tests.Parity;

/// <summary>Exhaustive checks of the field arithmetic each width's kernels are built from.</summary>
public class Gf256KernelTests
{
    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void ConstantMultiply_EveryConstantTimesEveryByte_MatchesLogTables(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        var zeros = new byte[256];
        var product = new byte[256];
        for (var c = 0; c < 256; c++)
        {
            for (var x = 0; x < 256; x++) product[x] = (byte)x;
            ParityDispatch.MulXor(width, ref product[0], ref zeros[0], 256, (byte)c);
            for (var x = 0; x < 256; x++)
                Assert.True(
                    Gf256.Mul((byte)c, (byte)x) == product[x],
                    $"width {width}: {c} * {x} gave {product[x]}, expected {Gf256.Mul((byte)c, (byte)x)}");
        }
    }

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void MultiplyByTwo_EveryByte_MatchesLogTables(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        for (var times = 1; times <= 3; times++)
        {
            var q = new byte[256];
            for (var x = 0; x < 256; x++) q[x] = (byte)x;
            ParityDispatch.Mul2InPlace(width, ref q[0], 256, times);
            for (var x = 0; x < 256; x++)
                Assert.True(
                    Gf256.Mul(Gf256.Exp(times), (byte)x) == q[x], $"width {width}: 2^{times} * {x} gave {q[x]}");
        }
    }

    [Fact]
    public void GfniMultiplyByTwoConstant_IsTheMatrixOfTwo()
    {
        Assert.Equal(Ops512Gfni.Mul2Matrix, Gf256.AffineMatrix(2));
    }

    [Fact]
    public void Generator_HasOrder255()
    {
        // Q's coefficients g^0..g^254 must be distinct, or two data members could not be told apart.
        var seen = new HashSet<byte>();
        for (var i = 0; i < 255; i++) Assert.True(seen.Add(Gf256.Exp(i)), $"g^{i} repeats an earlier power");
        Assert.Equal(1, Gf256.Exp(255));
    }
}
