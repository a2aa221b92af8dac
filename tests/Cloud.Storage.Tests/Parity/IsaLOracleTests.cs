using Cloud.Storage.Parity;

namespace Cloud.Storage.Tests.Parity;

/// <summary>
/// Our P and Q against Intel ISA-L's <c>xor_gen</c> and <c>pq_gen</c> (libisal.so.2, installed by
/// test.sh from Debian's libisal-dev): an implementation written independently of ours, and the
/// one Linux md agrees with, so byte equality pins the field, the generator and the member order.
/// </summary>
public unsafe class IsaLOracleTests
{
    // ISA-L wants 32-byte aligned pointers and, for pq_gen, lengths in whole 32-byte vectors.
    private static readonly int[] Lengths = [64, 4096, 4096 + 64, 65536, 65536 + 32];

    private static readonly int[] DataCounts = [2, 3, 4, 5, 6, 7, 8, 10, 13, 16, 31];

    [Fact]
    public void Library_IsInstalled()
    {
        // Without it every oracle test below would fail with a DllNotFoundException; say why up front.
        Assert.True(
            IsaLRaid.IsAvailable(),
            $"{IsaLRaid.Library} not found: test.sh installs it (apt-get install libisal-dev).");
    }

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void ComputeP_MatchesIsaLXorGen(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(901);
        var rng = new Random(seed);
        var pointers = stackalloc void*[DataCounts.Max() + 1];
        foreach (var dataCount in DataCounts)
        foreach (var length in Lengths)
        {
            AlignedBuffer[] buffers = Allocate(rng, dataCount, 1, length);
            try
            {
                for (var i = 0; i <= dataCount; i++) pointers[i] = buffers[i].Pointer;
                Assert.Equal(0, IsaLRaid.XorGen(dataCount + 1, length, pointers));
                var isal = buffers[dataCount].GetSpan().ToArray();

                buffers[dataCount].GetSpan().Fill(0xA5);
                RaidMath.ComputeP(Data(buffers, dataCount), buffers[dataCount].GetSpan(), width);
                Stripe.Equal(
                    isal,
                    buffers[dataCount].GetSpan(),
                    $"seed {seed}, width {width}, {dataCount} data, {length} bytes: P vs xor_gen");
            }
            finally
            {
                Free(buffers);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Stripe.Widths), MemberType = typeof(Stripe))]
    public void ComputePQ_MatchesIsaLPqGen(int widthBytes)
    {
        var width = (VectorWidth)widthBytes;
        var seed = Stripe.Seed(902);
        var rng = new Random(seed);
        var pointers = stackalloc void*[DataCounts.Max() + 2];
        foreach (var dataCount in DataCounts)
        foreach (var length in Lengths)
        {
            AlignedBuffer[] buffers = Allocate(rng, dataCount, 2, length);
            try
            {
                for (var i = 0; i < dataCount + 2; i++) pointers[i] = buffers[i].Pointer;
                Assert.Equal(0, IsaLRaid.PqGen(dataCount + 2, length, pointers));
                var isalP = buffers[dataCount].GetSpan().ToArray();
                var isalQ = buffers[dataCount + 1].GetSpan().ToArray();

                buffers[dataCount].GetSpan().Fill(0xA5);
                buffers[dataCount + 1].GetSpan().Fill(0x5A);
                RaidMath.ComputePQ(
                    Data(buffers, dataCount), buffers[dataCount].GetSpan(), buffers[dataCount + 1].GetSpan(), width);
                var context = $"seed {seed}, width {width}, {dataCount} data, {length} bytes";
                Stripe.Equal(isalP, buffers[dataCount].GetSpan(), context + ": P vs pq_gen");
                Stripe.Equal(isalQ, buffers[dataCount + 1].GetSpan(), context + ": Q vs pq_gen");
            }
            finally
            {
                Free(buffers);
            }
        }
    }

    [Fact]
    public void Reconstruct_FromIsaLParity_RestoresEveryPairOfDataMembers()
    {
        // Parity written by ISA-L (as another RAID-6 implementation would leave it on disk) must be
        // enough for our reconstruction.
        var seed = Stripe.Seed(903);
        var rng = new Random(seed);
        const int dataCount = 6, length = 4096;
        AlignedBuffer[] buffers = Allocate(rng, dataCount, 2, length);
        try
        {
            var pointers = stackalloc void*[dataCount + 2];
            for (var i = 0; i < dataCount + 2; i++) pointers[i] = buffers[i].Pointer;
            Assert.Equal(0, IsaLRaid.PqGen(dataCount + 2, length, pointers));
            byte[][] original = [.. buffers.Select(b => b.GetSpan().ToArray())];
            Memory<byte>[] members = [.. buffers.Select(b => b.Memory)];
            for (var a = 0; a < dataCount; a++)
            for (var b = a + 1; b < dataCount; b++)
            {
                members[a].Span.Clear();
                members[b].Span.Clear();
                RaidMath.Reconstruct(members, 2, [a, b]);
                for (var i = 0; i < members.Length; i++)
                    Stripe.Equal(original[i], members[i].Span, $"seed {seed}, missing [{a},{b}]: member {i}");
            }
        }
        finally
        {
            Free(buffers);
        }
    }

    private static AlignedBuffer[] Allocate(Random rng, int dataCount, int parityCount, int length)
    {
        var buffers = new AlignedBuffer[dataCount + parityCount];
        for (var i = 0; i < buffers.Length; i++)
        {
            buffers[i] = new AlignedBuffer(length);
            if (i < dataCount) rng.NextBytes(buffers[i].GetSpan());
        }
        return buffers;
    }

    private static ReadOnlyMemory<byte>[] Data(AlignedBuffer[] buffers, int dataCount) =>
        [.. buffers.Take(dataCount).Select(b => (ReadOnlyMemory<byte>)b.Memory)];

    private static void Free(AlignedBuffer[] buffers)
    {
        foreach (AlignedBuffer buffer in buffers) ((IDisposable)buffer).Dispose();
    }
}
