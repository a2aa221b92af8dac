namespace Cloud.Storage.Parity;

/// <summary>
/// The byte-at-a-time reference for <see cref="RaidMath"/>: the same contract, written as
/// plainly as possible so that it can serve as the test oracle for every vector path. Not for
/// production use (it is slow, and regenerating parity allocates).
/// </summary>
internal static class RaidMathReference
{
    /// <summary>P = D0 ^ D1 ^ ... ^ Dn-1.</summary>
    public static void ComputeP(ReadOnlySpan<ReadOnlyMemory<byte>> data, Span<byte> p)
    {
        RequireData(data, p.Length);
        data[0].Span.CopyTo(p);
        for (var d = 1; d < data.Length; d++)
        {
            ReadOnlySpan<byte> src = data[d].Span;
            for (var i = 0; i < p.Length; i++) p[i] ^= src[i];
        }
    }

    /// <summary>P and Q over the data chunks.</summary>
    public static void ComputePQ(ReadOnlySpan<ReadOnlyMemory<byte>> data, Span<byte> p, Span<byte> q)
    {
        RequireData(data, p.Length);
        if (q.Length != p.Length)
            throw new ArgumentException($"Q length {q.Length} differs from P length {p.Length}.", nameof(q));
        p.Clear();
        q.Clear();
        // Horner's rule from the highest index down: q = q*g ^ Di.
        for (var d = data.Length - 1; d >= 0; d--)
        {
            ReadOnlySpan<byte> src = data[d].Span;
            for (var i = 0; i < p.Length; i++)
            {
                p[i] ^= src[i];
                q[i] = (byte)(Gf256.Mul(q[i], 2) ^ src[i]);
            }
        }
    }

    /// <summary>
    /// Read-modify-write: updates P (and Q, when not empty) in place for data chunk
    /// <paramref name="dataIndex"/> changing from <paramref name="oldData"/> to <paramref name="newData"/>.
    /// </summary>
    public static void ApplyDelta(
        int dataIndex,
        ReadOnlySpan<byte> oldData,
        ReadOnlySpan<byte> newData,
        Span<byte> p,
        Span<byte> q)
    {
        if (oldData.Length != newData.Length
            || p.Length != newData.Length
            || (!q.IsEmpty && q.Length != newData.Length))
            throw new ArgumentException("old data, new data, P and Q must have the same length.");
        if (dataIndex < 0 || dataIndex > 254)
            throw new ArgumentOutOfRangeException(nameof(dataIndex), dataIndex, "allowed: 0..254.");
        var coefficient = Gf256.Exp(dataIndex);
        for (var i = 0; i < p.Length; i++)
        {
            var delta = (byte)(oldData[i] ^ newData[i]);
            p[i] ^= delta;
            if (!q.IsEmpty) q[i] ^= Gf256.Mul(coefficient, delta);
        }
    }

    /// <summary>
    /// Rebuilds the members listed in <paramref name="missing"/> in place from the others.
    /// <paramref name="members"/> holds n data chunks then <paramref name="parityCount"/> parity
    /// chunks (1: P; 2: P and Q). At most <paramref name="parityCount"/> members may be missing.
    /// </summary>
    public static void Reconstruct(Span<Memory<byte>> members, int parityCount, ReadOnlySpan<int> missing)
    {
        if (parityCount is < 1 or > 2)
            throw new ArgumentOutOfRangeException(nameof(parityCount), parityCount, "allowed: 1 (P) or 2 (P+Q).");
        if (missing.Length > parityCount)
            throw new ArgumentException(
                $"{missing.Length} missing members; at most {parityCount} can be rebuilt.", nameof(missing));
        var dataCount = members.Length - parityCount;
        int pIndex = dataCount, qIndex = dataCount + 1;
        var len = members[0].Length;
        foreach (var m in missing)
            if (m < 0 || m >= members.Length)
                throw new ArgumentOutOfRangeException(nameof(missing), m, $"allowed: 0..{members.Length - 1}.");
        if (missing.Length == 0) return;

        int a = missing[0], b = missing.Length > 1 ? missing[1] : -1;
        if (b >= 0 && b < a) (a, b) = (b, a);
        if (a == b) throw new ArgumentException($"member {a} listed twice as missing.", nameof(missing));

        if (a >= dataCount)
        {
            // Only parity is missing: regenerate it.
            RegenerateParity(members, dataCount, parityCount);
            return;
        }
        if (b < 0 || b == qIndex)
        {
            // One data chunk from P, then Q if it was lost too.
            Span<byte> target = members[a].Span;
            members[pIndex].Span.CopyTo(target);
            for (var d = 0; d < dataCount; d++)
            {
                if (d == a) continue;
                ReadOnlySpan<byte> src = members[d].Span;
                for (var i = 0; i < len; i++) target[i] ^= src[i];
            }
            if (b == qIndex) RegenerateParity(members, dataCount, parityCount);
            return;
        }
        if (b == pIndex)
        {
            // Data from Q: Da = (Q ^ sum over d != a of g^d Dd) / g^a; then P.
            Span<byte> target = members[a].Span;
            members[qIndex].Span.CopyTo(target);
            for (var d = 0; d < dataCount; d++)
            {
                if (d == a) continue;
                var c = Gf256.Exp(d);
                ReadOnlySpan<byte> src = members[d].Span;
                for (var i = 0; i < len; i++) target[i] ^= Gf256.Mul(c, src[i]);
            }
            var inv = Gf256.Inv(Gf256.Exp(a));
            for (var i = 0; i < len; i++) target[i] = Gf256.Mul(inv, target[i]);
            RegenerateParity(members, dataCount, parityCount);
            return;
        }

        // Two data chunks a < b. With Pab = P ^ sum of the others and Qab likewise:
        // Da = (g^(b-a) * Pab ^ g^-a * Qab) / (g^(b-a) ^ 1), Db = Pab ^ Da.
        Span<byte> da = members[a].Span, db = members[b].Span;
        members[pIndex].Span.CopyTo(da);
        members[qIndex].Span.CopyTo(db);
        for (var d = 0; d < dataCount; d++)
        {
            if (d == a || d == b) continue;
            var c = Gf256.Exp(d);
            ReadOnlySpan<byte> src = members[d].Span;
            for (var i = 0; i < len; i++)
            {
                da[i] ^= src[i];
                db[i] ^= Gf256.Mul(c, src[i]);
            }
        }
        var gba = Gf256.Exp(b - a);
        var denominatorInv = Gf256.Inv((byte)(gba ^ 1));
        var coefP = Gf256.Mul(gba, denominatorInv);
        var coefQ = Gf256.Mul(Gf256.Inv(Gf256.Exp(a)), denominatorInv);
        for (var i = 0; i < len; i++)
        {
            byte pab = da[i], qab = db[i];
            var x = (byte)(Gf256.Mul(coefP, pab) ^ Gf256.Mul(coefQ, qab));
            da[i] = x;
            db[i] = (byte)(pab ^ x);
        }
    }

    private static void RegenerateParity(Span<Memory<byte>> members, int dataCount, int parityCount)
    {
        ReadOnlyMemory<byte>[] data = new ReadOnlyMemory<byte>[dataCount];
        for (var d = 0; d < dataCount; d++) data[d] = members[d];
        if (parityCount == 1) ComputeP(data, members[dataCount].Span);
        else ComputePQ(data, members[dataCount].Span, members[dataCount + 1].Span);
    }

    private static void RequireData(ReadOnlySpan<ReadOnlyMemory<byte>> data, int length)
    {
        if (data.Length < 1) throw new ArgumentException("at least one data chunk is required.", nameof(data));
        foreach (ReadOnlyMemory<byte> chunk in data)
            if (chunk.Length != length)
                throw new ArgumentException(
                    $"data chunk length {chunk.Length} differs from parity length {length}.", nameof(data));
    }
}
