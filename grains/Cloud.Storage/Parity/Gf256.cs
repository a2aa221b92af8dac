namespace Cloud.Storage.Parity;

/// <summary>
/// Arithmetic in GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11D) and generator 2: the
/// field Linux md's RAID-6 and ISA-L's <c>pq_gen</c> use, so our Q is byte-identical to theirs.
/// </summary>
public static class Gf256
{
    /// <summary>The reduction polynomial.</summary>
    public const int Polynomial = 0x11D;

    // Exp is doubled in length so Mul can index log(a)+log(b) without a modulo.
    private static readonly byte[] ExpTable = new byte[512];
    private static readonly byte[] LogTable = new byte[256];

    static Gf256()
    {
        int x = 1;
        for (int i = 0; i < 255; i++)
        {
            ExpTable[i] = (byte)x;
            LogTable[x] = (byte)i;
            x <<= 1;
            if ((x & 0x100) != 0) x ^= Polynomial;
        }
        for (int i = 255; i < ExpTable.Length; i++) ExpTable[i] = ExpTable[i - 255];
    }

    /// <summary>g^power for the generator g = 2; any non-negative power.</summary>
    public static byte Exp(int power) => ExpTable[power % 255];

    /// <summary>The discrete logarithm base 2 of a non-zero element.</summary>
    public static int Log(byte value)
    {
        if (value == 0) throw new ArgumentOutOfRangeException(nameof(value), "log of 0 is undefined in GF(2^8); allowed: 1..255.");
        return LogTable[value];
    }

    public static byte Mul(byte a, byte b) => a == 0 || b == 0 ? (byte)0 : ExpTable[LogTable[a] + LogTable[b]];

    public static byte Inv(byte a)
    {
        if (a == 0) throw new DivideByZeroException("0 has no inverse in GF(2^8).");
        return ExpTable[255 - LogTable[a]];
    }

    public static byte Div(byte a, byte b) => a == 0 ? (byte)0 : Mul(a, Inv(b));
}
