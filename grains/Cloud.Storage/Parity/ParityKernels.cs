using System.Runtime.CompilerServices;

namespace Cloud.Storage.Parity;

/// <summary>A compile-time count of sources (1..4) for a kernel; the JIT folds the branches on it.</summary>
internal interface ISourceCount
{
    static abstract int Value { get; }
}

internal readonly struct One : ISourceCount { public static int Value => 1; }
internal readonly struct Two : ISourceCount { public static int Value => 2; }
internal readonly struct Three : ISourceCount { public static int Value => 3; }
internal readonly struct Four : ISourceCount { public static int Value => 4; }

/// <summary>A compile-time switch for a kernel; the JIT removes the code of the other setting.</summary>
internal interface IFlag
{
    static abstract bool On { get; }
}

internal readonly struct Yes : IFlag { public static bool On => true; }
internal readonly struct No : IFlag { public static bool On => false; }

/// <summary>
/// The inner loops of the parity math, for one register width. Each kernel handles the leading
/// whole registers of <c>length</c> bytes and returns how many bytes it did; the caller finishes
/// the tail with the one-byte width. Sources and destinations are refs to the first byte; a
/// destination may be the same buffer as a source (every position is loaded before it is stored),
/// but buffers must not otherwise overlap. Unused source refs are never read.
/// </summary>
/// <remarks>
/// The generation loops do four registers per iteration, reading each source's four adjacent
/// registers back to back, then finish whole registers one at a time: the GF(2^8) chains are
/// serial within one register, so independent chains keep the execution units busy, and the
/// loop overhead shrinks. The less used kernels do two registers per iteration or one.
/// </remarks>
[SkipLocalsInit]
internal static class ParityKernels<TV, TTable, TOps>
    where TV : struct
    where TTable : struct
    where TOps : IParityOps<TV, TTable>
{
    /// <summary>destination = s0 ^ s1 ^ ... (the first <typeparamref name="TN"/> sources).</summary>
    public static nuint Xor<TN>(ref byte destination, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint length)
        where TN : ISourceCount
    {
        var size = TOps.Size;
        nuint i = 0;
        for (; i + 4 * size <= length; i += 4 * size)
        {
            // All registers of one source are loaded back to back: adjacent cache lines of a
            // stream, which the hardware prefetchers serve better than hopping between streams.
            nuint i1 = i + size, i2 = i + 2 * size, i3 = i + 3 * size;
            TV x0 = TOps.Load(ref Unsafe.Add(ref s0, i));
            TV x1 = TOps.Load(ref Unsafe.Add(ref s0, i1));
            TV x2 = TOps.Load(ref Unsafe.Add(ref s0, i2));
            TV x3 = TOps.Load(ref Unsafe.Add(ref s0, i3));
            if (TN.Value > 1) XorFour(ref s1, i, size, ref x0, ref x1, ref x2, ref x3);
            if (TN.Value > 2) XorFour(ref s2, i, size, ref x0, ref x1, ref x2, ref x3);
            if (TN.Value > 3) XorFour(ref s3, i, size, ref x0, ref x1, ref x2, ref x3);
            TOps.Store(ref Unsafe.Add(ref destination, i), x0);
            TOps.Store(ref Unsafe.Add(ref destination, i1), x1);
            TOps.Store(ref Unsafe.Add(ref destination, i2), x2);
            TOps.Store(ref Unsafe.Add(ref destination, i3), x3);
        }
        for (; i + size <= length; i += size) XorAt<TN>(ref destination, ref s0, ref s1, ref s2, ref s3, i);
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void XorFour(ref byte source, nuint i, nuint size, ref TV x0, ref TV x1, ref TV x2, ref TV x3)
    {
        x0 = TOps.Xor(x0, TOps.Load(ref Unsafe.Add(ref source, i)));
        x1 = TOps.Xor(x1, TOps.Load(ref Unsafe.Add(ref source, i + size)));
        x2 = TOps.Xor(x2, TOps.Load(ref Unsafe.Add(ref source, i + 2 * size)));
        x3 = TOps.Xor(x3, TOps.Load(ref Unsafe.Add(ref source, i + 3 * size)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void XorAt<TN>(ref byte destination, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint i)
        where TN : ISourceCount
    {
        TV x = TOps.Load(ref Unsafe.Add(ref s0, i));
        if (TN.Value > 1) x = TOps.Xor(x, TOps.Load(ref Unsafe.Add(ref s1, i)));
        if (TN.Value > 2) x = TOps.Xor(x, TOps.Load(ref Unsafe.Add(ref s2, i)));
        if (TN.Value > 3) x = TOps.Xor(x, TOps.Load(ref Unsafe.Add(ref s3, i)));
        TOps.Store(ref Unsafe.Add(ref destination, i), x);
    }

    /// <summary>
    /// Horner's rule for Q (and P) over sources given from the highest data index down:
    /// q = q*2 ^ s for each source in turn, p ^= s. When <typeparamref name="TAccumulate"/> is on,
    /// q and p start from the destinations' current contents, q first multiplied by 2 once per
    /// member skipped since (<paramref name="skippedBefore"/>, for reconstruction); otherwise from zero.
    /// </summary>
    public static nuint Pq<TN, TAccumulate, TWithP>(
        ref byte p, ref byte q, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint length, int skippedBefore)
        where TN : ISourceCount
        where TAccumulate : IFlag
        where TWithP : IFlag
    {
        var size = TOps.Size;
        nuint i = 0;
        for (; i + 4 * size <= length; i += 4 * size)
        {
            // Four independent Horner chains: each step is a multiply then an XOR on the previous
            // result, so one chain alone would wait on latency rather than throughput.
            nuint i1 = i + size, i2 = i + 2 * size, i3 = i + 3 * size;
            TV s0a = TOps.Load(ref Unsafe.Add(ref s0, i)), s0b = TOps.Load(ref Unsafe.Add(ref s0, i1));
            TV s0c = TOps.Load(ref Unsafe.Add(ref s0, i2)), s0d = TOps.Load(ref Unsafe.Add(ref s0, i3));
            TV qa = s0a, qb = s0b, qc = s0c, qd = s0d;
            TV pa = s0a, pb = s0b, pc = s0c, pd = s0d;
            if (TAccumulate.On)
            {
                qa = TOps.Load(ref Unsafe.Add(ref q, i));
                qb = TOps.Load(ref Unsafe.Add(ref q, i1));
                qc = TOps.Load(ref Unsafe.Add(ref q, i2));
                qd = TOps.Load(ref Unsafe.Add(ref q, i3));
                for (var k = 0; k < skippedBefore; k++)
                {
                    qa = TOps.Mul2(qa);
                    qb = TOps.Mul2(qb);
                    qc = TOps.Mul2(qc);
                    qd = TOps.Mul2(qd);
                }
                qa = TOps.Xor(TOps.Mul2(qa), s0a);
                qb = TOps.Xor(TOps.Mul2(qb), s0b);
                qc = TOps.Xor(TOps.Mul2(qc), s0c);
                qd = TOps.Xor(TOps.Mul2(qd), s0d);
                if (TWithP.On)
                {
                    pa = TOps.Xor(TOps.Load(ref Unsafe.Add(ref p, i)), s0a);
                    pb = TOps.Xor(TOps.Load(ref Unsafe.Add(ref p, i1)), s0b);
                    pc = TOps.Xor(TOps.Load(ref Unsafe.Add(ref p, i2)), s0c);
                    pd = TOps.Xor(TOps.Load(ref Unsafe.Add(ref p, i3)), s0d);
                }
            }
            if (TN.Value > 1)
                PqStepFour<TWithP>(ref s1, i, size, ref qa, ref qb, ref qc, ref qd, ref pa, ref pb, ref pc, ref pd);
            if (TN.Value > 2)
                PqStepFour<TWithP>(ref s2, i, size, ref qa, ref qb, ref qc, ref qd, ref pa, ref pb, ref pc, ref pd);
            if (TN.Value > 3)
                PqStepFour<TWithP>(ref s3, i, size, ref qa, ref qb, ref qc, ref qd, ref pa, ref pb, ref pc, ref pd);
            TOps.Store(ref Unsafe.Add(ref q, i), qa);
            TOps.Store(ref Unsafe.Add(ref q, i1), qb);
            TOps.Store(ref Unsafe.Add(ref q, i2), qc);
            TOps.Store(ref Unsafe.Add(ref q, i3), qd);
            if (TWithP.On)
            {
                TOps.Store(ref Unsafe.Add(ref p, i), pa);
                TOps.Store(ref Unsafe.Add(ref p, i1), pb);
                TOps.Store(ref Unsafe.Add(ref p, i2), pc);
                TOps.Store(ref Unsafe.Add(ref p, i3), pd);
            }
        }
        for (; i + size <= length; i += size)
            PqAt<TN, TAccumulate, TWithP>(ref p, ref q, ref s0, ref s1, ref s2, ref s3, i, skippedBefore);
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PqStepFour<TWithP>(ref byte source, nuint i, nuint size,
        ref TV qa, ref TV qb, ref TV qc, ref TV qd, ref TV pa, ref TV pb, ref TV pc, ref TV pd)
        where TWithP : IFlag
    {
        TV sa = TOps.Load(ref Unsafe.Add(ref source, i));
        TV sb = TOps.Load(ref Unsafe.Add(ref source, i + size));
        TV sc = TOps.Load(ref Unsafe.Add(ref source, i + 2 * size));
        TV sd = TOps.Load(ref Unsafe.Add(ref source, i + 3 * size));
        qa = TOps.Xor(TOps.Mul2(qa), sa);
        qb = TOps.Xor(TOps.Mul2(qb), sb);
        qc = TOps.Xor(TOps.Mul2(qc), sc);
        qd = TOps.Xor(TOps.Mul2(qd), sd);
        if (TWithP.On)
        {
            pa = TOps.Xor(pa, sa);
            pb = TOps.Xor(pb, sb);
            pc = TOps.Xor(pc, sc);
            pd = TOps.Xor(pd, sd);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PqAt<TN, TAccumulate, TWithP>(
        ref byte p, ref byte q, ref byte s0, ref byte s1, ref byte s2, ref byte s3, nuint i, int skippedBefore)
        where TN : ISourceCount
        where TAccumulate : IFlag
        where TWithP : IFlag
    {
        TV s = TOps.Load(ref Unsafe.Add(ref s0, i));
        TV qv = s, pv = s;
        if (TAccumulate.On)
        {
            qv = TOps.Load(ref Unsafe.Add(ref q, i));
            for (var k = 0; k < skippedBefore; k++) qv = TOps.Mul2(qv);
            qv = TOps.Xor(TOps.Mul2(qv), s);
            if (TWithP.On) pv = TOps.Xor(TOps.Load(ref Unsafe.Add(ref p, i)), s);
        }
        if (TN.Value > 1)
        {
            s = TOps.Load(ref Unsafe.Add(ref s1, i));
            qv = TOps.Xor(TOps.Mul2(qv), s);
            if (TWithP.On) pv = TOps.Xor(pv, s);
        }
        if (TN.Value > 2)
        {
            s = TOps.Load(ref Unsafe.Add(ref s2, i));
            qv = TOps.Xor(TOps.Mul2(qv), s);
            if (TWithP.On) pv = TOps.Xor(pv, s);
        }
        if (TN.Value > 3)
        {
            s = TOps.Load(ref Unsafe.Add(ref s3, i));
            qv = TOps.Xor(TOps.Mul2(qv), s);
            if (TWithP.On) pv = TOps.Xor(pv, s);
        }
        TOps.Store(ref Unsafe.Add(ref q, i), qv);
        if (TWithP.On) TOps.Store(ref Unsafe.Add(ref p, i), pv);
    }

    /// <summary>
    /// q = q * 2^<paramref name="times"/>: Horner's last steps when the lowest data members are missing.
    /// </summary>
    public static nuint Mul2InPlace(ref byte q, nuint length, int times)
    {
        var size = TOps.Size;
        nuint i = 0;
        for (; i + size <= length; i += size)
        {
            TV x = TOps.Load(ref Unsafe.Add(ref q, i));
            for (var k = 0; k < times; k++) x = TOps.Mul2(x);
            TOps.Store(ref Unsafe.Add(ref q, i), x);
        }
        return i;
    }

    /// <summary>Read-modify-write: d = old ^ new; p ^= d; q ^= c*d.</summary>
    public static nuint Delta(
        ref byte oldData,
        ref byte newData,
        ref byte p,
        ref byte q,
        nuint length,
        byte coefficient)
    {
        TTable table = TOps.Table(coefficient);
        var size = TOps.Size;
        nuint i = 0;
        for (; i + 2 * size <= length; i += 2 * size)
        {
            DeltaAt(ref oldData, ref newData, ref p, ref q, i, table);
            DeltaAt(ref oldData, ref newData, ref p, ref q, i + size, table);
        }
        if (i + size <= length)
        {
            DeltaAt(ref oldData, ref newData, ref p, ref q, i, table);
            i += size;
        }
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DeltaAt(ref byte oldData, ref byte newData, ref byte p, ref byte q, nuint i, in TTable table)
    {
        TV d = TOps.Xor(TOps.Load(ref Unsafe.Add(ref oldData, i)), TOps.Load(ref Unsafe.Add(ref newData, i)));
        TOps.Store(ref Unsafe.Add(ref p, i), TOps.Xor(TOps.Load(ref Unsafe.Add(ref p, i)), d));
        TOps.Store(ref Unsafe.Add(ref q, i), TOps.Xor(TOps.Load(ref Unsafe.Add(ref q, i)), TOps.Mul(table, d)));
    }

    /// <summary>
    /// destination = c * (destination ^ source): one data member back from Q and the partial Q of the others.
    /// </summary>
    public static nuint MulXor(ref byte destination, ref byte source, nuint length, byte coefficient)
    {
        TTable table = TOps.Table(coefficient);
        var size = TOps.Size;
        nuint i = 0;
        for (; i + size <= length; i += size)
        {
            TV x = TOps.Xor(TOps.Load(ref Unsafe.Add(ref destination, i)), TOps.Load(ref Unsafe.Add(ref source, i)));
            TOps.Store(ref Unsafe.Add(ref destination, i), TOps.Mul(table, x));
        }
        return i;
    }

    /// <summary>
    /// Two data members back: with Pab in <paramref name="da"/> and the partial Q of the other data
    /// in <paramref name="db"/>, Da = cP*Pab ^ cQ*(Q ^ partial), Db = Pab ^ Da.
    /// </summary>
    public static nuint CombineTwo(
        ref byte da,
        ref byte db,
        ref byte q,
        nuint length,
        byte coefficientP,
        byte coefficientQ)
    {
        TTable tableP = TOps.Table(coefficientP);
        TTable tableQ = TOps.Table(coefficientQ);
        var size = TOps.Size;
        nuint i = 0;
        for (; i + size <= length; i += size)
        {
            TV pab = TOps.Load(ref Unsafe.Add(ref da, i));
            TV qab = TOps.Xor(TOps.Load(ref Unsafe.Add(ref db, i)), TOps.Load(ref Unsafe.Add(ref q, i)));
            TV a = TOps.Xor(TOps.Mul(tableP, pab), TOps.Mul(tableQ, qab));
            TOps.Store(ref Unsafe.Add(ref da, i), a);
            TOps.Store(ref Unsafe.Add(ref db, i), TOps.Xor(pab, a));
        }
        return i;
    }
}
