using System.Diagnostics;
using System.Runtime.CompilerServices;
using K512 = Cloud.Storage.Parity.ParityKernels<
    System.Runtime.Intrinsics.Vector512<byte>,
    Cloud.Storage.Parity.NibbleVectors<System.Runtime.Intrinsics.Vector512<byte>>,
    Cloud.Storage.Parity.Ops512>;
using K512G = Cloud.Storage.Parity.ParityKernels<
    System.Runtime.Intrinsics.Vector512<byte>,
    System.Runtime.Intrinsics.Vector512<byte>,
    Cloud.Storage.Parity.Ops512Gfni>;
using K256 = Cloud.Storage.Parity.ParityKernels<
    System.Runtime.Intrinsics.Vector256<byte>,
    Cloud.Storage.Parity.NibbleVectors<System.Runtime.Intrinsics.Vector256<byte>>,
    Cloud.Storage.Parity.Ops256>;
using K128 = Cloud.Storage.Parity.ParityKernels<
    System.Runtime.Intrinsics.Vector128<byte>,
    Cloud.Storage.Parity.NibbleVectors<System.Runtime.Intrinsics.Vector128<byte>>,
    Cloud.Storage.Parity.Ops128>;
using K64 = Cloud.Storage.Parity.ParityKernels<ulong, Cloud.Storage.Parity.ByteTable, Cloud.Storage.Parity.Ops64>;
using K8 = Cloud.Storage.Parity.ParityKernels<byte, Cloud.Storage.Parity.ByteTable, Cloud.Storage.Parity.Ops8>;

namespace Cloud.Storage.Parity;

/// <summary>
/// Runs a kernel at the chosen width over a whole range: the width's kernel takes the leading
/// whole registers, then the one-byte kernel finishes the tail. Also turns runtime counts and
/// switches into the kernels' compile-time type arguments.
/// </summary>
internal static class ParityDispatch
{
    public static void Xor(
        VectorWidth width,
        int count,
        ref byte destination,
        ref byte s0,
        ref byte s1,
        ref byte s2,
        ref byte s3,
        nuint length)
    {
        switch (count)
        {
            case 1: Xor<One>(width, ref destination, ref s0, ref s1, ref s2, ref s3, length); break;
            case 2: Xor<Two>(width, ref destination, ref s0, ref s1, ref s2, ref s3, length); break;
            case 3: Xor<Three>(width, ref destination, ref s0, ref s1, ref s2, ref s3, length); break;
            case 4: Xor<Four>(width, ref destination, ref s0, ref s1, ref s2, ref s3, length); break;
            default: throw new UnreachableException($"XOR kernel given {count} sources; it takes 1..4.");
        }
    }

    private static void Xor<TN>(
        VectorWidth width,
        ref byte d,
        ref byte s0,
        ref byte s1,
        ref byte s2,
        ref byte s3,
        nuint length)
        where TN : ISourceCount
    {
        var done = width switch
        {
            VectorWidth.V512Gfni => K512G.Xor<TN>(ref d, ref s0, ref s1, ref s2, ref s3, length),
            VectorWidth.V512 => K512.Xor<TN>(ref d, ref s0, ref s1, ref s2, ref s3, length),
            VectorWidth.V256 => K256.Xor<TN>(ref d, ref s0, ref s1, ref s2, ref s3, length),
            VectorWidth.V128 => K128.Xor<TN>(ref d, ref s0, ref s1, ref s2, ref s3, length),
            _ => K64.Xor<TN>(ref d, ref s0, ref s1, ref s2, ref s3, length),
        };
        if (done < length)
            K8.Xor<TN>(ref Unsafe.Add(ref d, done), ref Unsafe.Add(ref s0, done), ref Unsafe.Add(ref s1, done),
                ref Unsafe.Add(ref s2, done), ref Unsafe.Add(ref s3, done), length - done);
    }

    public static void Pq(VectorWidth width, int count, bool accumulate, bool withP,
        ref byte p, ref byte q, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint length, int skippedBefore)
    {
        switch (count)
        {
            case 1: Pq<One>(
                width, accumulate, withP, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore); break;
            case 2: Pq<Two>(
                width, accumulate, withP, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore); break;
            case 3: Pq<Three>(
                width, accumulate, withP, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore); break;
            case 4: Pq<Four>(
                width, accumulate, withP, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore); break;
            default: throw new UnreachableException($"P+Q kernel given {count} sources; it takes 1..4.");
        }
    }

    private static void Pq<TN>(VectorWidth width, bool accumulate, bool withP,
        ref byte p, ref byte q, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint length, int skippedBefore)
        where TN : ISourceCount
    {
        if (accumulate) Pq<TN, Yes>(width, withP, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore);
        else Pq<TN, No>(width, withP, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore);
    }

    private static void Pq<TN, TA>(VectorWidth width, bool withP,
        ref byte p, ref byte q, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint length, int skippedBefore)
        where TN : ISourceCount
        where TA : IFlag
    {
        if (withP) Pq<TN, TA, Yes>(width, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore);
        else Pq<TN, TA, No>(width, ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore);
    }

    private static void Pq<TN, TA, TP>(VectorWidth width,
        ref byte p, ref byte q, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint length, int skippedBefore)
        where TN : ISourceCount
        where TA : IFlag
        where TP : IFlag
    {
        var done = width switch
        {
            VectorWidth.V512Gfni => K512G.Pq<TN, TA, TP>(
                ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore),
            VectorWidth.V512 => K512.Pq<TN, TA, TP>(
                ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore),
            VectorWidth.V256 => K256.Pq<TN, TA, TP>(
                ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore),
            VectorWidth.V128 => K128.Pq<TN, TA, TP>(
                ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore),
            _ => K64.Pq<TN, TA, TP>(ref p, ref q, ref s0, ref s1, ref s2, ref s3, length, skippedBefore),
        };
        if (done < length)
            K8.Pq<TN, TA, TP>(ref Unsafe.Add(ref p, done), ref Unsafe.Add(ref q, done), ref Unsafe.Add(ref s0, done),
                ref Unsafe.Add(ref s1, done), ref Unsafe.Add(ref s2, done), ref Unsafe.Add(ref s3, done),
                length - done, skippedBefore);
    }

    public static void Mul2InPlace(VectorWidth width, ref byte q, nuint length, int times)
    {
        var done = width switch
        {
            VectorWidth.V512Gfni => K512G.Mul2InPlace(ref q, length, times),
            VectorWidth.V512 => K512.Mul2InPlace(ref q, length, times),
            VectorWidth.V256 => K256.Mul2InPlace(ref q, length, times),
            VectorWidth.V128 => K128.Mul2InPlace(ref q, length, times),
            _ => K64.Mul2InPlace(ref q, length, times),
        };
        if (done < length) K8.Mul2InPlace(ref Unsafe.Add(ref q, done), length - done, times);
    }

    public static void Delta(
        VectorWidth width,
        ref byte oldData,
        ref byte newData,
        ref byte p,
        ref byte q,
        nuint length,
        byte coefficient)
    {
        var done = width switch
        {
            VectorWidth.V512Gfni => K512G.Delta(ref oldData, ref newData, ref p, ref q, length, coefficient),
            VectorWidth.V512 => K512.Delta(ref oldData, ref newData, ref p, ref q, length, coefficient),
            VectorWidth.V256 => K256.Delta(ref oldData, ref newData, ref p, ref q, length, coefficient),
            VectorWidth.V128 => K128.Delta(ref oldData, ref newData, ref p, ref q, length, coefficient),
            _ => K64.Delta(ref oldData, ref newData, ref p, ref q, length, coefficient),
        };
        if (done < length)
            K8.Delta(ref Unsafe.Add(ref oldData, done), ref Unsafe.Add(ref newData, done), ref Unsafe.Add(ref p, done),
                ref Unsafe.Add(ref q, done), length - done, coefficient);
    }

    public static void MulXor(VectorWidth width, ref byte destination, ref byte source, nuint length, byte coefficient)
    {
        var done = width switch
        {
            VectorWidth.V512Gfni => K512G.MulXor(ref destination, ref source, length, coefficient),
            VectorWidth.V512 => K512.MulXor(ref destination, ref source, length, coefficient),
            VectorWidth.V256 => K256.MulXor(ref destination, ref source, length, coefficient),
            VectorWidth.V128 => K128.MulXor(ref destination, ref source, length, coefficient),
            _ => K64.MulXor(ref destination, ref source, length, coefficient),
        };
        if (done < length)
            K8.MulXor(
                ref Unsafe.Add(ref destination, done), ref Unsafe.Add(ref source, done), length - done, coefficient);
    }

    public static void CombineTwo(
        VectorWidth width,
        ref byte da,
        ref byte db,
        ref byte q,
        nuint length,
        byte coefficientP,
        byte coefficientQ)
    {
        var done = width switch
        {
            VectorWidth.V512Gfni => K512G.CombineTwo(ref da, ref db, ref q, length, coefficientP, coefficientQ),
            VectorWidth.V512 => K512.CombineTwo(ref da, ref db, ref q, length, coefficientP, coefficientQ),
            VectorWidth.V256 => K256.CombineTwo(ref da, ref db, ref q, length, coefficientP, coefficientQ),
            VectorWidth.V128 => K128.CombineTwo(ref da, ref db, ref q, length, coefficientP, coefficientQ),
            _ => K64.CombineTwo(ref da, ref db, ref q, length, coefficientP, coefficientQ),
        };
        if (done < length)
            K8.CombineTwo(ref Unsafe.Add(ref da, done), ref Unsafe.Add(ref db, done), ref Unsafe.Add(ref q, done),
                length - done, coefficientP, coefficientQ);
    }
}
