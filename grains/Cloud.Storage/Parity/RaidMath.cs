using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Cloud.Storage.Parity;

/// <summary>
/// Parity generation, read-modify-write deltas and reconstruction for RAID-5 (P) and RAID-6
/// (P+Q). A stripe is given as its members in order: the data chunks D0..Dn-1, then P, then Q.
/// P = D0 ^ ... ^ Dn-1 and Q = sum over i of g^i * Di in GF(2^8) (see <see cref="Gf256"/>), the
/// Linux md and ISA-L convention: Q is byte-identical to ISA-L's <c>pq_gen</c>.
/// </summary>
/// <remarks>
/// Every buffer of one call has the same length, which may be any length (whole registers are
/// done with SIMD, the tail byte by byte). The work runs at the widest vector width the hardware
/// accelerates (512, 256 or 128 bits, or 64-bit words without SIMD) and allocates nothing.
/// Buffers must not overlap one another. Calls are thread-safe as long as no two touch the same
/// buffer.
/// </remarks>
[SkipLocalsInit]
public static class RaidMath
{
    /// <summary>
    /// The most data members a stripe may have: Q gives member i the coefficient g^i, and g has order 255.
    /// </summary>
    public const int MaxDataMembers = 255;

    /// <summary>
    /// Bytes done for all sources before moving on, when there are more sources than one kernel pass
    /// takes: the destination (P and Q) then stays in the L1 cache between passes.
    /// </summary>
    private const int TileBytes = 16 * 1024;

    /// <summary>Sources one XOR or P+Q kernel pass reads.</summary>
    private const int SourcesPerPass = 4;

    /// <summary>P = D0 ^ D1 ^ ... ^ Dn-1.</summary>
    /// <param name="data">The data chunks, 1..<see cref="MaxDataMembers"/> of them, all as long as
    /// <paramref name="p"/>.</param>
    /// <param name="p">Receives P.</param>
    public static void ComputeP(ReadOnlySpan<ReadOnlyMemory<byte>> data, Span<byte> p)
        => ComputeP(data, p, VectorWidths.Best);

    /// <summary>P and Q over the data chunks.</summary>
    /// <param name="data">The data chunks, 1..<see cref="MaxDataMembers"/> of them, all as long as
    /// <paramref name="p"/>.</param>
    /// <param name="p">Receives P.</param>
    /// <param name="q">Receives Q; as long as <paramref name="p"/>.</param>
    public static void ComputePQ(ReadOnlySpan<ReadOnlyMemory<byte>> data, Span<byte> p, Span<byte> q)
        => ComputePQ(data, p, q, VectorWidths.Best);

    /// <summary>
    /// Read-modify-write: updates P (and Q, when not empty) in place for data chunk
    /// <paramref name="dataIndex"/> changing from <paramref name="oldData"/> to <paramref name="newData"/>:
    /// P ^= old ^ new, Q ^= g^dataIndex * (old ^ new).
    /// </summary>
    /// <param name="dataIndex">The data member's index in the stripe, 0..<see cref="MaxDataMembers"/>-1.</param>
    /// <param name="oldData">The chunk's bytes before the write.</param>
    /// <param name="newData">The chunk's bytes after the write.</param>
    /// <param name="p">P, updated in place.</param>
    /// <param name="q">Q, updated in place; empty for RAID-5.</param>
    public static void ApplyDelta(
        int dataIndex,
        ReadOnlySpan<byte> oldData,
        ReadOnlySpan<byte> newData,
        Span<byte> p,
        Span<byte> q) =>
        ApplyDelta(dataIndex, oldData, newData, p, q, VectorWidths.Best);

    /// <summary>
    /// Rebuilds the members listed in <paramref name="missing"/> in place from the others.
    /// <paramref name="members"/> holds n data chunks then <paramref name="parityCount"/> parity
    /// chunks (1: P; 2: P and Q). At most <paramref name="parityCount"/> members may be missing;
    /// the contents of the missing members' buffers on entry do not matter.
    /// </summary>
    /// <param name="members">Data chunks then parity chunks, all the same length.</param>
    /// <param name="parityCount">1 for RAID-5 (P), 2 for RAID-6 (P and Q).</param>
    /// <param name="missing">Distinct member indices to rebuild, at most <paramref name="parityCount"/> of
    /// them.</param>
    public static void Reconstruct(Span<Memory<byte>> members, int parityCount, ReadOnlySpan<int> missing) =>
        Reconstruct(members, parityCount, missing, VectorWidths.Best);

    internal static void ComputeP(ReadOnlySpan<ReadOnlyMemory<byte>> data, Span<byte> p, VectorWidth width)
    {
        RequireData(data, p.Length);
        VectorWidths.Require(width);
        Span<int> sources = stackalloc int[data.Length];
        for (var d = 0; d < sources.Length; d++) sources[d] = d;
        XorInto(data, sources, ref MemoryMarshal.GetReference(p), (nuint)p.Length, width);
    }

    internal static void ComputePQ(
        ReadOnlySpan<ReadOnlyMemory<byte>> data,
        Span<byte> p,
        Span<byte> q,
        VectorWidth width)
    {
        RequireData(data, p.Length);
        if (q.Length != p.Length)
            throw new ArgumentException($"Q length {q.Length} differs from P length {p.Length}.", nameof(q));
        VectorWidths.Require(width);
        HornerInto(
            data,
            data.Length,
            -1,
            -1,
            withP: true,
            ref MemoryMarshal.GetReference(p),
            ref MemoryMarshal.GetReference(q),
            (nuint)p.Length,
            width);
    }

    internal static void ApplyDelta(
        int dataIndex,
        ReadOnlySpan<byte> oldData,
        ReadOnlySpan<byte> newData,
        Span<byte> p,
        Span<byte> q,
        VectorWidth width)
    {
        if (oldData.Length != newData.Length
            || p.Length != newData.Length
            || (!q.IsEmpty && q.Length != newData.Length))
            throw new ArgumentException(
                $"old data ({oldData.Length} bytes), new data ({newData.Length}), P ({p.Length}) and Q ({q.Length}, or empty) must have the same length.");
        if (dataIndex < 0 || dataIndex >= MaxDataMembers)
            throw new ArgumentOutOfRangeException(nameof(dataIndex), dataIndex, $"allowed: 0..{MaxDataMembers - 1}.");
        VectorWidths.Require(width);
        ref var oldRef = ref MemoryMarshal.GetReference(oldData);
        ref var newRef = ref MemoryMarshal.GetReference(newData);
        ref var pRef = ref MemoryMarshal.GetReference(p);
        if (q.IsEmpty)
            ParityDispatch.Xor(width, 3, ref pRef, ref pRef, ref oldRef, ref newRef, ref pRef, (nuint)p.Length);
        else
            ParityDispatch.Delta(
                width,
                ref oldRef,
                ref newRef,
                ref pRef,
                ref MemoryMarshal.GetReference(q),
                (nuint)p.Length,
                Gf256.Exp(dataIndex));
    }

    internal static void Reconstruct(
        Span<Memory<byte>> members,
        int parityCount,
        ReadOnlySpan<int> missing,
        VectorWidth width)
    {
        if (parityCount is < 1 or > 2)
            throw new ArgumentOutOfRangeException(nameof(parityCount), parityCount, "allowed: 1 (P) or 2 (P+Q).");
        var dataCount = members.Length - parityCount;
        if (dataCount < 1 || dataCount > MaxDataMembers)
            throw new ArgumentException(
                $"{members.Length} members with {parityCount} parity leaves {dataCount} data members; allowed: 1..{MaxDataMembers}.", nameof(members));
        if (missing.Length > parityCount)
            throw new ArgumentException(
                $"{missing.Length} missing members; at most {parityCount} can be rebuilt.", nameof(missing));
        var length = members[0].Length;
        for (var i = 1; i < members.Length; i++)
            if (members[i].Length != length)
                throw new ArgumentException(
                    $"member {i} is {members[i].Length} bytes, member 0 is {length}; all members must have the same length.",
                    nameof(members));
        foreach (var m in missing)
            if (m < 0 || m >= members.Length)
                throw new ArgumentOutOfRangeException(nameof(missing), m, $"allowed: 0..{members.Length - 1}.");
        VectorWidths.Require(width);
        if (missing.Length == 0) return;

        int a = missing[0], b = missing.Length > 1 ? missing[1] : -1;
        if (b >= 0 && b < a) (a, b) = (b, a);
        if (a == b) throw new ArgumentException($"member {a} listed twice as missing.", nameof(missing));

        // Memory<byte> and ReadOnlyMemory<byte> have the same layout; viewing the members read-only
        // lets one set of helpers serve both generation and reconstruction without copying the list.
        ReadOnlySpan<ReadOnlyMemory<byte>> all = MemoryMarshal.CreateReadOnlySpan(
            ref Unsafe.As<Memory<byte>, ReadOnlyMemory<byte>>(ref MemoryMarshal.GetReference(members)), members.Length);
        int pIndex = dataCount, qIndex = dataCount + 1;
        var len = (nuint)length;

        if (a >= dataCount)
        {
            // Only parity is missing: regenerate what is missing from the data.
            var pMissing = a == pIndex;
            var qMissing = a == qIndex || b == qIndex;
            if (qMissing)
                HornerInto(all, dataCount, -1, -1, pMissing, ref Ref(all, pIndex), ref Ref(all, qIndex), len, width);
            else
                XorInto(
                    all,
                    DataExcept(dataCount, -1, -1, -1, stackalloc int[dataCount]),
                    ref Ref(all, pIndex),
                    len,
                    width);
            return;
        }

        if (b < 0 || b == qIndex)
        {
            // One data member from P and the other data; then Q, if it was lost too, from the data.
            XorInto(all, DataExcept(dataCount, a, -1, pIndex, stackalloc int[dataCount]), ref Ref(all, a), len, width);
            if (b == qIndex)
                HornerInto(
                    all, dataCount, -1, -1, withP: false, ref Ref(all, qIndex), ref Ref(all, qIndex), len, width);
            return;
        }

        if (b == pIndex)
        {
            // Data member a and P: the other data's partial Q into Da, then Da = g^-a * (Q ^ partial); then P.
            HornerInto(all, dataCount, a, -1, withP: false, ref Ref(all, a), ref Ref(all, a), len, width);
            ParityDispatch.MulXor(width, ref Ref(all, a), ref Ref(all, qIndex), len, Gf256.Inv(Gf256.Exp(a)));
            XorInto(
                all, DataExcept(dataCount, -1, -1, -1, stackalloc int[dataCount]), ref Ref(all, pIndex), len, width);
            return;
        }

        // Two data members a < b. Pab = P ^ the other data (into Da), Qab = Q ^ the others' partial Q
        // (partial into Db); then Da = (g^(b-a) * Pab ^ g^-a * Qab) / (g^(b-a) ^ 1) and Db = Pab ^ Da.
        XorInto(all, DataExcept(dataCount, a, b, pIndex, stackalloc int[dataCount]), ref Ref(all, a), len, width);
        HornerInto(all, dataCount, a, b, withP: false, ref Ref(all, b), ref Ref(all, b), len, width);
        var gba = Gf256.Exp(b - a);
        var denominatorInverse = Gf256.Inv((byte)(gba ^ 1));
        var coefficientP = Gf256.Mul(gba, denominatorInverse);
        var coefficientQ = Gf256.Mul(Gf256.Inv(Gf256.Exp(a)), denominatorInverse);
        ParityDispatch.CombineTwo(
            width, ref Ref(all, a), ref Ref(all, b), ref Ref(all, qIndex), len, coefficientP, coefficientQ);
    }

    /// <summary>
    /// The data indices other than <paramref name="skipA"/> and <paramref name="skipB"/>, then <paramref name="extra"/>
    /// if not negative.
    /// </summary>
    private static ReadOnlySpan<int> DataExcept(int dataCount, int skipA, int skipB, int extra, Span<int> buffer)
    {
        // The buffer holds dataCount entries: at least one data member is skipped whenever extra is added.
        var count = 0;
        for (var d = 0; d < dataCount; d++)
            if (d != skipA && d != skipB) buffer[count++] = d;
        if (extra >= 0) buffer[count++] = extra;
        return buffer[..count];
    }

    private static ref byte Ref(ReadOnlySpan<ReadOnlyMemory<byte>> members, int index) =>
        ref MemoryMarshal.GetReference(members[index].Span);

    /// <summary>destination = XOR of the listed members; an empty list gives zeros.</summary>
    private static void XorInto(
        ReadOnlySpan<ReadOnlyMemory<byte>> members,
        ReadOnlySpan<int> sources,
        ref byte destination,
        nuint length,
        VectorWidth width)
    {
        if (sources.IsEmpty)
        {
            MemoryMarshal.CreateSpan(ref destination, checked((int)length)).Clear();
            return;
        }
        var tile = sources.Length <= SourcesPerPass ? length : TileBytes;
        for (nuint offset = 0; offset < length; offset += tile)
        {
            var n = Math.Min(tile, length - offset);
            ref var d = ref Unsafe.Add(ref destination, offset);
            var next = 0;
            while (next < sources.Length)
            {
                // After the first pass the destination is itself the first source of the next.
                var used = next == 0 ? 0 : 1;
                var take = Math.Min(SourcesPerPass - used, sources.Length - next);
                var slots = used + take;
                var first = next - used;
                ref var r0 = ref (used == 0 ? ref Source(members, sources[first], offset) : ref d);
                ref var r1 = ref (slots > 1 ? ref Source(members, sources[first + 1], offset) : ref d);
                ref var r2 = ref (slots > 2 ? ref Source(members, sources[first + 2], offset) : ref d);
                ref var r3 = ref (slots > 3 ? ref Source(members, sources[first + 3], offset) : ref d);
                ParityDispatch.Xor(width, slots, ref d, ref r0, ref r1, ref r2, ref r3, n);
                next += take;
            }
        }
    }

    /// <summary>
    /// Q (and P when <paramref name="withP"/>) over the data members other than
    /// <paramref name="skipA"/> and <paramref name="skipB"/>, by Horner's rule from the highest index
    /// down; a skipped member counts as zeros. With nothing to read, the outputs are zeros.
    /// </summary>
    private static void HornerInto(ReadOnlySpan<ReadOnlyMemory<byte>> data, int dataCount, int skipA, int skipB,
        bool withP,
        ref byte p, ref byte q, nuint length, VectorWidth width)
    {
        // present: the data indices read, highest first. gap[k]: members skipped between present[k-1] and present[k].
        Span<int> present = stackalloc int[dataCount];
        Span<int> gap = stackalloc int[dataCount];
        int count = 0, pending = 0;
        for (var d = dataCount - 1; d >= 0; d--)
        {
            if (d == skipA || d == skipB)
            {
                pending++;
                continue;
            }
            present[count] = d;
            gap[count] = count == 0 ? 0 : pending;
            pending = 0;
            count++;
        }
        if (count == 0)
        {
            MemoryMarshal.CreateSpan(ref q, checked((int)length)).Clear();
            if (withP) MemoryMarshal.CreateSpan(ref p, checked((int)length)).Clear();
            return;
        }
        // Members below the lowest one read still multiply Q by 2 each (their coefficient's step).
        var trailing = pending;

        var onePass = count <= SourcesPerPass && trailing == 0 && !gap[..count].ContainsAnyExcept(0);
        var tile = onePass ? length : TileBytes;
        for (nuint offset = 0; offset < length; offset += tile)
        {
            var n = Math.Min(tile, length - offset);
            ref var pt = ref Unsafe.Add(ref p, offset);
            ref var qt = ref Unsafe.Add(ref q, offset);
            var k = 0;
            while (k < count)
            {
                // A pass takes up to four consecutive members; a skipped member ends it, so the next
                // pass can apply the skip as extra doublings of the running Q.
                var take = 1;
                while (take < SourcesPerPass && k + take < count && gap[k + take] == 0) take++;
                ref var s0 = ref Source(data, present[k], offset);
                ref var s1 = ref (take > 1 ? ref Source(data, present[k + 1], offset) : ref s0);
                ref var s2 = ref (take > 2 ? ref Source(data, present[k + 2], offset) : ref s0);
                ref var s3 = ref (take > 3 ? ref Source(data, present[k + 3], offset) : ref s0);
                ParityDispatch.Pq(
                    width, take, accumulate: k > 0, withP, ref pt, ref qt, ref s0, ref s1, ref s2, ref s3, n, gap[k]);
                k += take;
            }
            if (trailing > 0) ParityDispatch.Mul2InPlace(width, ref qt, n, trailing);
        }
    }

    private static ref byte Source(ReadOnlySpan<ReadOnlyMemory<byte>> members, int index, nuint offset) =>
        ref Unsafe.Add(ref MemoryMarshal.GetReference(members[index].Span), offset);

    private static void RequireData(ReadOnlySpan<ReadOnlyMemory<byte>> data, int length)
    {
        if (data.Length < 1 || data.Length > MaxDataMembers)
            throw new ArgumentException($"{data.Length} data chunks; allowed: 1..{MaxDataMembers}.", nameof(data));
        for (var d = 0; d < data.Length; d++)
            if (data[d].Length != length)
                throw new ArgumentException(
                    $"data chunk {d} is {data[d].Length} bytes, parity is {length}; all must have the same length.",
                    nameof(data));
    }
}
