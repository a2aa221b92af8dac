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

    // For every constant c, 32 bytes: c*i for i = 0..15 (the low nibble), then c*(i<<4) (the high
    // nibble). Multiplication by c is linear over GF(2), so c*x = low[x & 15] ^ high[x >> 4]: the
    // split-nibble form that a 16-entry byte shuffle (PSHUFB, TBL) evaluates 16..64 bytes at a time.
    private static readonly byte[] NibbleTables = new byte[256 * NibbleTableBytes];

    // For every constant c, the 8x8 bit matrix of x -> c*x in the layout of GF2P8AFFINEQB: byte
    // 7-i holds the input bits that feed output bit i. Multiplying by a constant is linear over
    // GF(2) in any field, so one affine instruction multiplies in ours even though the instruction
    // set's own GF multiply (GF2P8MULB) is fixed to the AES polynomial 0x11B.
    private static readonly ulong[] AffineMatrices = new ulong[256];

    /// <summary>Bytes per constant in <see cref="NibbleTable"/>: 16 low-nibble then 16 high-nibble products.</summary>
    internal const int NibbleTableBytes = 32;

    static Gf256()
    {
        var x = 1;
        for (var i = 0; i < 255; i++)
        {
            ExpTable[i] = (byte)x;
            LogTable[x] = (byte)i;
            x <<= 1;
            if ((x & 0x100) != 0) x ^= Polynomial;
        }
        for (var i = 255; i < ExpTable.Length; i++) ExpTable[i] = ExpTable[i - 255];
        for (var c = 0; c < 256; c++)
        for (var i = 0; i < 16; i++)
        {
            NibbleTables[c * NibbleTableBytes + i] = Mul((byte)c, (byte)i);
            NibbleTables[c * NibbleTableBytes + 16 + i] = Mul((byte)c, (byte)(i << 4));
        }
        for (var c = 0; c < 256; c++)
        {
            ulong matrix = 0;
            for (var outputBit = 0; outputBit < 8; outputBit++)
            {
                var row = 0;
                for (var inputBit = 0; inputBit < 8; inputBit++)
                    if (((Mul((byte)c, (byte)(1 << inputBit)) >> outputBit) & 1) != 0) row |= 1 << inputBit;
                matrix |= (ulong)row << (8 * (7 - outputBit));
            }
            AffineMatrices[c] = matrix;
        }
    }

    /// <summary>The GF2P8AFFINEQB matrix that multiplies by <paramref name="constant"/>.</summary>
    internal static ulong AffineMatrix(byte constant) => AffineMatrices[constant];

    /// <summary>
    /// The split-nibble product table of <paramref name="constant"/> (see <see cref="NibbleTableBytes"/>).
    /// </summary>
    internal static ReadOnlySpan<byte> NibbleTable(byte constant)
        => NibbleTables.AsSpan(constant * NibbleTableBytes, NibbleTableBytes);

    /// <summary>g^power for the generator g = 2; any non-negative power.</summary>
    public static byte Exp(int power) => ExpTable[power % 255];

    /// <summary>The discrete logarithm base 2 of a non-zero element.</summary>
    public static int Log(byte value)
    {
        if (value == 0)
            throw new ArgumentOutOfRangeException(nameof(value), "log of 0 is undefined in GF(2^8); allowed: 1..255.");
        return LogTable[value];
    }

    /// <summary>The product a*b.</summary>
    public static byte Mul(byte a, byte b) => a == 0 || b == 0 ? (byte)0 : ExpTable[LogTable[a] + LogTable[b]];

    /// <summary>The multiplicative inverse of a non-zero element.</summary>
    public static byte Inv(byte a)
    {
        if (a == 0) throw new DivideByZeroException("0 has no inverse in GF(2^8).");
        return ExpTable[255 - LogTable[a]];
    }
}
