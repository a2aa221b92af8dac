using Cloud.Storage.Volumes;

namespace Cloud.Storage.Tests.Volumes;

public sealed class PayloadPoolTests
{
    [Fact]
    public void Rent_GivesExactLengths_AndReturnedArraysComeBack()
    {
        var pool = new PayloadPool(1 << 20);
        byte[] a = pool.Rent(12288);
        Assert.Equal(12288, a.Length);
        pool.Return(a);
        Assert.Equal(12288, pool.RetainedBytes);
        Assert.Same(a, pool.Rent(12288));
        Assert.Equal(0, pool.RetainedBytes);
        Assert.NotSame(a, pool.Rent(12288));
        Assert.Equal(8192, pool.Rent(8192).Length);
    }

    [Fact]
    public void Return_BeyondTheBound_DropsTheArray()
    {
        var pool = new PayloadPool(16384);
        pool.Return(new byte[8192]);
        pool.Return(new byte[8192]);
        pool.Return(new byte[8192]);
        Assert.Equal(16384, pool.RetainedBytes);
    }
}
