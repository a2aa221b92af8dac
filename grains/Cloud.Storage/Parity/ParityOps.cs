using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Cloud.Storage.Parity;

/// <summary>
/// The handful of operations the parity kernels need, for one register type. The kernels are
/// generic over an implementing struct, so the JIT compiles one specialised copy per width with
/// every call below inlined: the loops are written once and run at 512, 256, 128 or 64 bits, or
/// one byte at a time for the tail.
/// </summary>
/// <typeparam name="TV">The register: a vector of bytes, a 64-bit word, or a byte.</typeparam>
/// <typeparam name="TTable">A constant multiplier prepared for <see cref="Mul"/>.</typeparam>
internal interface IParityOps<TV, TTable>
    where TV : struct
    where TTable : struct
{
    /// <summary>Bytes per register.</summary>
    static abstract nuint Size { get; }

    static abstract TV Load(ref byte source);

    static abstract void Store(ref byte destination, TV value);

    static abstract TV Xor(TV a, TV b);

    /// <summary>Every byte times 2 in GF(2^8) mod 0x11D: (x &lt;&lt; 1) ^ (0x1D where the top bit was set).</summary>
    static abstract TV Mul2(TV x);

    /// <summary>
    /// Prepares multiplication by <paramref name="constant"/>; called once per kernel call, outside the loop.
    /// </summary>
    static abstract TTable Table(byte constant);

    /// <summary>Every byte times the table's constant in GF(2^8).</summary>
    static abstract TV Mul(in TTable table, TV x);
}

/// <summary>The two split-nibble lookup tables of one constant, each broadcast to every 16-byte lane.</summary>
internal readonly struct NibbleVectors<TV>(TV low, TV high)
    where TV : struct
{
    public readonly TV Low = low;
    public readonly TV High = high;
}

/// <summary>AVX-512 BW: 64 bytes per register.</summary>
internal readonly struct Ops512 : IParityOps<Vector512<byte>, NibbleVectors<Vector512<byte>>>
{
    public static nuint Size => 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Load(ref byte source) => Vector512.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(ref byte destination, Vector512<byte> value) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Xor(Vector512<byte> a, Vector512<byte> b) => a ^ b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Mul2(Vector512<byte> x) =>
        (x + x) ^ (Vector512.LessThan(x.AsSByte(), Vector512<sbyte>.Zero).AsByte() & Vector512.Create((byte)0x1D));

    public static NibbleVectors<Vector512<byte>> Table(byte constant)
    {
        ReadOnlySpan<byte> t = Gf256.NibbleTable(constant);
        Vector256<byte> low = Vector256.Create(Vector128.Create(t[..16]), Vector128.Create(t[..16]));
        Vector256<byte> high = Vector256.Create(Vector128.Create(t[16..]), Vector128.Create(t[16..]));
        return new(Vector512.Create(low, low), Vector512.Create(high, high));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Mul(in NibbleVectors<Vector512<byte>> table, Vector512<byte> x)
    {
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> low = x & mask;
        Vector512<byte> high = Vector512.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & mask;
        // VPSHUFB looks up within each 16-byte lane, which is why the tables are broadcast per lane.
        return Avx512BW.Shuffle(table.Low, low) ^ Avx512BW.Shuffle(table.High, high);
    }
}

/// <summary>
/// AVX-512 BW with GFNI: 64 bytes per register, and every multiplication by a constant (2 included)
/// is one GF2P8AFFINEQB with that constant's bit matrix instead of a compare/add/mask sequence or
/// two table lookups.
/// </summary>
internal readonly struct Ops512Gfni : IParityOps<Vector512<byte>, Vector512<byte>>
{
    public static nuint Size => 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Load(ref byte source) => Vector512.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(ref byte destination, Vector512<byte> value) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Xor(Vector512<byte> a, Vector512<byte> b) => a ^ b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Mul2(Vector512<byte> x) =>
        Gfni.V512.GaloisFieldAffineTransform(x, Vector512.Create(Mul2Matrix).AsByte(), 0);

    // Gf256.AffineMatrix(2) (a test pins the equality), spelled out so the JIT sees a constant:
    // output bit i takes input bit i-1, and bits 0, 2, 3, 4 also take input bit 7 (the 0x1D fold).
    internal const ulong Mul2Matrix = 0x8001828488102040UL;

    public static Vector512<byte> Table(byte constant) => Vector512.Create(Gf256.AffineMatrix(constant)).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<byte> Mul(in Vector512<byte> table, Vector512<byte> x)
        => Gfni.V512.GaloisFieldAffineTransform(x, table, 0);
}

/// <summary>AVX2: 32 bytes per register.</summary>
internal readonly struct Ops256 : IParityOps<Vector256<byte>, NibbleVectors<Vector256<byte>>>
{
    public static nuint Size => 32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Load(ref byte source) => Vector256.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(ref byte destination, Vector256<byte> value) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Xor(Vector256<byte> a, Vector256<byte> b) => a ^ b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Mul2(Vector256<byte> x) =>
        (x + x) ^ (Vector256.LessThan(x.AsSByte(), Vector256<sbyte>.Zero).AsByte() & Vector256.Create((byte)0x1D));

    public static NibbleVectors<Vector256<byte>> Table(byte constant)
    {
        ReadOnlySpan<byte> t = Gf256.NibbleTable(constant);
        return new(
            Vector256.Create(Vector128.Create(t[..16]), Vector128.Create(t[..16])),
            Vector256.Create(Vector128.Create(t[16..]), Vector128.Create(t[16..])));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Mul(in NibbleVectors<Vector256<byte>> table, Vector256<byte> x)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<byte> low = x & mask;
        Vector256<byte> high = Vector256.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & mask;
        return Avx2.Shuffle(table.Low, low) ^ Avx2.Shuffle(table.High, high);
    }
}

/// <summary>SSSE3 or AdvSIMD: 16 bytes per register.</summary>
internal readonly struct Ops128 : IParityOps<Vector128<byte>, NibbleVectors<Vector128<byte>>>
{
    public static nuint Size => 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Load(ref byte source) => Vector128.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(ref byte destination, Vector128<byte> value) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Xor(Vector128<byte> a, Vector128<byte> b) => a ^ b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Mul2(Vector128<byte> x) =>
        (x + x) ^ (Vector128.LessThan(x.AsSByte(), Vector128<sbyte>.Zero).AsByte() & Vector128.Create((byte)0x1D));

    public static NibbleVectors<Vector128<byte>> Table(byte constant)
    {
        ReadOnlySpan<byte> t = Gf256.NibbleTable(constant);
        return new(Vector128.Create(t[..16]), Vector128.Create(t[16..]));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Mul(in NibbleVectors<Vector128<byte>> table, Vector128<byte> x)
    {
        Vector128<byte> mask = Vector128.Create((byte)0x0F);
        Vector128<byte> low = x & mask;
        Vector128<byte> high = Vector128.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & mask;
        return Lookup(table.Low, low) ^ Lookup(table.High, high);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Lookup(Vector128<byte> table, Vector128<byte> indices)
    {
        if (Ssse3.IsSupported) return Ssse3.Shuffle(table, indices);
        if (AdvSimd.Arm64.IsSupported) return AdvSimd.Arm64.VectorTableLookup(table, indices);
        // Indices are 0..15, so the portable shuffle's out-of-range rule never applies.
        return Vector128.Shuffle(table, indices);
    }
}

/// <summary>No SIMD: eight bytes at a time in a 64-bit word (SWAR).</summary>
internal readonly struct Ops64 : IParityOps<ulong, ByteTable>
{
    private const ulong LowSevenBits = 0x7F7F7F7F7F7F7F7FUL;
    private const ulong LowBit = 0x0101010101010101UL;

    public static nuint Size => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Load(ref byte source) => Unsafe.ReadUnaligned<ulong>(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(ref byte destination, ulong value) => Unsafe.WriteUnaligned(ref destination, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Xor(ulong a, ulong b) => a ^ b;

    // Shift each byte left within its lane, then fold 0x1D into the bytes whose top bit fell off.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mul2(ulong x) => ((x & LowSevenBits) << 1) ^ (((x >> 7) & LowBit) * 0x1D);

    public static ByteTable Table(byte constant) => new(constant);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mul(in ByteTable table, ulong x)
    {
        ref var t = ref table.Reference;
        ulong result = 0;
        for (var shift = 0; shift < 64; shift += 8)
        {
            var b = (uint)(x >> shift) & 0xFF;
            result |= (ulong)(Unsafe.Add(ref t, b & 0x0F) ^ Unsafe.Add(ref t, 16 + (b >> 4))) << shift;
        }
        return result;
    }
}

/// <summary>One byte at a time: the tail shorter than a register, for every width.</summary>
internal readonly struct Ops8 : IParityOps<byte, ByteTable>
{
    public static nuint Size => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Load(ref byte source) => source;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(ref byte destination, byte value) => destination = value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Xor(byte a, byte b) => (byte)(a ^ b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Mul2(byte x) => (byte)((x << 1) ^ ((x >> 7) * 0x1D));

    public static ByteTable Table(byte constant) => new(constant);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Mul(in ByteTable table, byte x)
    {
        ref var t = ref table.Reference;
        return (byte)(Unsafe.Add(ref t, x & 0x0F) ^ Unsafe.Add(ref t, 16 + (x >> 4)));
    }
}

/// <summary>The split-nibble table of one constant for the scalar paths.</summary>
internal readonly struct ByteTable(byte constant)
{
    private readonly byte constant = constant;

    public ref byte Reference => ref MemoryMarshal.GetReference(Gf256.NibbleTable(constant));
}
