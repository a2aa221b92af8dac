using Cloud.Storage.Volumes;

namespace Cloud.Storage.Tests.Volumes;

public sealed class PayloadPoolTests
{
    [Fact]
    public void Rent_GivesExactLengths_AndReturnedArraysComeBack()
    {
        var pool = new PayloadPool(1 << 20);
        var a = pool.Rent(12288);
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

#if DEBUG
    // The check runs in debug builds only (dotnet test builds Debug): in release it would cost a weak-table update on
    // every payload of the NBD write path.

    [Fact]
    public void Return_OfAnArrayAlreadyInThePool_ThrowsAndKeepsItOnce()
    {
        var pool = new PayloadPool(1 << 20);
        var a = pool.Rent(8192);
        pool.Return(a);
        var e = Assert.Throws<InvalidOperationException>(() => pool.Return(a));
        Assert.Contains("returned to the pool twice", e.Message);
        Assert.Equal(8192, pool.RetainedBytes);
        Assert.Same(a, pool.Rent(8192));
        Assert.NotSame(a, pool.Rent(8192));
    }

    [Fact]
    public void Return_OfAnArrayDroppedOverTheBound_ThrowsTheSecondTime()
    {
        var pool = new PayloadPool(0);
        var a = new byte[4096];
        pool.Return(a);
        Assert.Equal(0, pool.RetainedBytes);
        Assert.Throws<InvalidOperationException>(() => pool.Return(a));
    }

    [Fact]
    public void Return_AfterTheArrayWasRentedAgain_IsAccepted()
    {
        var pool = new PayloadPool(1 << 20);
        var a = pool.Rent(4096);
        for (var i = 0; i < 3; i++)
        {
            pool.Return(a);
            Assert.Same(a, pool.Rent(4096));
        }
        pool.Return(a);
        Assert.Equal(4096, pool.RetainedBytes);
    }
#endif
}
