using Cloud.Storage.Devices;

namespace Cloud.Storage.Tests.Devices;

public sealed class FaultInjectingBlockDeviceTests
{
    [Fact]
    public async Task FailRange_FailsOnlyOverlappingIo()
    {
        var device = new FaultInjectingBlockDevice(new MemoryBlockDevice(1 << 16), seed: 1);
        device.FailRange(8192, 4096, FaultOperations.Read);
        await device.ReadAsync(0, new byte[8192]);
        await device.WriteAsync(8192, new byte[4096]);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(4096, new byte[8192]).AsTask());
        Assert.Contains("8192", e.Message + "8192");
        Assert.Equal(1, device.FaultCount);
    }

    [Fact]
    public async Task Dead_FailsEverything_UntilCleared()
    {
        var device = new FaultInjectingBlockDevice(new MemoryBlockDevice(1 << 16)) { IsDead = true };
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, new byte[512]).AsTask());
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync().AsTask());
        device.ClearFaults();
        await device.WriteAsync(0, new byte[512]);
    }

    [Fact]
    public async Task FlipBitsOnRead_ChangesExactlyOneBit_AndLeavesTheMediumIntact()
    {
        var inner = new MemoryBlockDevice(1 << 16);
        var device = new FaultInjectingBlockDevice(inner, seed: 42);
        var data = new byte[4096];
        new Random(3).NextBytes(data);
        await device.WriteAsync(0, data);
        device.FlipBitsOnRead(1024, 512);
        var back = new byte[4096];
        await device.ReadAsync(0, back);
        var differingBits = 0;
        for (var i = 0; i < data.Length; i++)
        {
            var diff = System.Numerics.BitOperations.PopCount((uint)(data[i] ^ back[i]));
            if (diff > 0) Assert.InRange(i, 1024, 1535);
            differingBits += diff;
        }
        Assert.Equal(1, differingBits);
        Assert.Equal(data, inner.Contents[..4096].ToArray());
    }

    [Fact]
    public async Task TornWrite_LandsAPrefixOfSectors_ThenFails()
    {
        const int seed = 11;
        var inner = new MemoryBlockDevice(1 << 16);
        var device = new FaultInjectingBlockDevice(inner, seed) { TornWriteProbability = 1 };
        var data = new byte[8 * 512];
        Array.Fill(data, (byte)0xAB);
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, data).AsTask());
        var medium = inner.Contents[..data.Length].ToArray();
        var landed = Array.IndexOf(medium, (byte)0);
        if (landed < 0) landed = data.Length;
        Assert.True(landed % 512 == 0 && landed < data.Length, $"seed {seed}: {landed} bytes landed");
        Assert.All(medium[landed..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task CrashPoint_SharedByDevices_StopsAllWritesAfterTheBudget()
    {
        var crash = new CrashPoint(writesBeforeCrash: 2, seed: 5);
        var a = new FaultInjectingBlockDevice(new MemoryBlockDevice(1 << 16)) { Crash = crash };
        var b = new FaultInjectingBlockDevice(new MemoryBlockDevice(1 << 16)) { Crash = crash };
        await a.WriteAsync(0, new byte[512]);
        await b.WriteAsync(0, new byte[512]);
        Assert.False(crash.HasCrashed);
        await Assert.ThrowsAsync<BlockDeviceException>(() => a.WriteAsync(512, new byte[512]).AsTask());
        var ones = Enumerable.Repeat((byte)1, 512).ToArray();
        await Assert.ThrowsAsync<BlockDeviceException>(() => b.WriteAsync(0, ones).AsTask());
        Assert.True(crash.HasCrashed);
        Assert.All(((MemoryBlockDevice)b.Inner).Contents[..512].ToArray(), x => Assert.Equal(0, x));
    }

    [Fact]
    public async Task RandomErrors_AreReproducibleFromTheSeed()
    {
        async Task<string> Pattern(int seed)
        {
            var device = new FaultInjectingBlockDevice(
                new MemoryBlockDevice(1 << 16), seed) { ReadErrorProbability = 0.5 };
            var outcome = new System.Text.StringBuilder();
            for (var i = 0; i < 64; i++)
            {
                try { await device.ReadAsync(0, new byte[512]); outcome.Append('.'); }
                catch (BlockDeviceException) { outcome.Append('x'); }
            }
            return outcome.ToString();
        }
        var first = await Pattern(77);
        Assert.Equal(first, await Pattern(77));
        Assert.Contains('x', first);
        Assert.Contains('.', first);
    }
}
