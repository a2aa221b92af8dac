using Cloud.Storage.Parity;

namespace Cloud.Storage.Tests.Parity;

/// <summary>
/// Bad input is refused with an exception naming the value and what is allowed, and nothing is written.
/// </summary>
public class RaidMathInputTests
{
    [Fact]
    public void ComputeP_ChunkLengthDiffersFromParity_IsRefused()
    {
        var p = new byte[64];
        var ex = Assert.Throws<ArgumentException>(() => RaidMath.ComputeP([new byte[64], new byte[63]], p));
        Assert.Contains("data chunk 1 is 63 bytes", ex.Message);
    }

    [Fact]
    public void ComputeP_NoData_IsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => RaidMath.ComputeP([], new byte[8]));
        Assert.Contains($"allowed: 1..{RaidMath.MaxDataMembers}", ex.Message);
    }

    [Fact]
    public void ComputePQ_QLengthDiffersFromP_IsRefusedAndWritesNothing()
    {
        var p = new byte[16];
        var q = new byte[32];
        var ex = Assert.Throws<ArgumentException>(
            () => RaidMath.ComputePQ([new byte[16] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }], p, q));
        Assert.Contains("Q length 32 differs from P length 16", ex.Message);
        Assert.All(p, b => Assert.Equal(0, b));
    }

    [Fact]
    public void ComputePQ_MoreDataThanCoefficients_IsRefused()
    {
        var data = new ReadOnlyMemory<byte>[RaidMath.MaxDataMembers + 1];
        for (var i = 0; i < data.Length; i++) data[i] = new byte[4];
        var ex = Assert.Throws<ArgumentException>(() => RaidMath.ComputePQ(data, new byte[4], new byte[4]));
        Assert.Contains($"{RaidMath.MaxDataMembers + 1} data chunks", ex.Message);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(RaidMath.MaxDataMembers)]
    public void ApplyDelta_DataIndexOutOfRange_IsRefused(int dataIndex)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(
            () => RaidMath.ApplyDelta(dataIndex, new byte[8], new byte[8], new byte[8], new byte[8]));
        Assert.Equal(dataIndex, ex.ActualValue);
        Assert.Contains($"allowed: 0..{RaidMath.MaxDataMembers - 1}", ex.Message);
    }

    [Fact]
    public void ApplyDelta_LengthsDiffer_IsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(
            () => RaidMath.ApplyDelta(0, new byte[8], new byte[8], new byte[8], new byte[4]));
        Assert.Contains("Q (4", ex.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void Reconstruct_ParityCountOutOfRange_IsRefused(int parityCount)
    {
        Memory<byte>[] members = [new byte[8], new byte[8], new byte[8], new byte[8]];
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => RaidMath.Reconstruct(members, parityCount, [0]));
        Assert.Equal(parityCount, ex.ActualValue);
    }

    [Fact]
    public void Reconstruct_MoreMissingThanParity_IsRefused()
    {
        Memory<byte>[] members = [new byte[8], new byte[8], new byte[8]];
        var ex = Assert.Throws<ArgumentException>(() => RaidMath.Reconstruct(members, 1, [0, 1]));
        Assert.Contains("at most 1 can be rebuilt", ex.Message);
    }

    [Fact]
    public void Reconstruct_SameMemberTwice_IsRefused()
    {
        Memory<byte>[] members = [new byte[8], new byte[8], new byte[8], new byte[8]];
        var ex = Assert.Throws<ArgumentException>(() => RaidMath.Reconstruct(members, 2, [1, 1]));
        Assert.Contains("member 1 listed twice", ex.Message);
    }

    [Fact]
    public void Reconstruct_MissingIndexOutOfRange_IsRefused()
    {
        Memory<byte>[] members = [new byte[8], new byte[8], new byte[8]];
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => RaidMath.Reconstruct(members, 1, [3]));
        Assert.Equal(3, ex.ActualValue);
        Assert.Contains("allowed: 0..2", ex.Message);
    }

    [Fact]
    public void Reconstruct_MembersOfDifferentLengths_IsRefusedAndWritesNothing()
    {
        byte[] survivor = [1, 2, 3, 4, 5, 6, 7, 8];
        Memory<byte>[] members = [new byte[8], survivor, new byte[9]];
        var ex = Assert.Throws<ArgumentException>(() => RaidMath.Reconstruct(members, 1, [0]));
        Assert.Contains("member 2 is 9 bytes", ex.Message);
        Assert.All(members[0].ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Reconstruct_NoDataMembers_IsRefused()
    {
        Memory<byte>[] members = [new byte[8], new byte[8]];
        var ex = Assert.Throws<ArgumentException>(() => RaidMath.Reconstruct(members, 2, [0]));
        Assert.Contains("leaves 0 data members", ex.Message);
    }
}
