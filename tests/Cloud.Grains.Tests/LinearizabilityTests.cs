using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using Cloud.Grains.Abstractions;

namespace Cloud.Grains.Tests;

[Collection(nameof(SharedCluster))]
public sealed class LinearizabilityTests(SharedClusterFixture fixture)
{
    private CloudCluster Cloud => fixture.Cloud;

    [Fact]
    public void Checker_RejectsAReadOfAnOverwrittenValue()
    {
        // write 1 completes, then write 2 completes, then a read returns 1: not linearizable.
        RegisterOp[] history = [new(true, 1, 0, 10, "a"), new(true, 2, 20, 30, "b"), new(false, 1, 40, 50, "c")];
        Assert.False(RegisterChecker.IsLinearizable(history, 0, out _));
        // With the read overlapping write 2 it is fine.
        RegisterOp[] overlapping = [new(true, 1, 0, 10, "a"), new(true, 2, 20, 60, "b"), new(false, 1, 40, 50, "c")];
        Assert.True(RegisterChecker.IsLinearizable(overlapping, 0, out var why), why);
    }

    [Fact]
    public async Task ConcurrentWritersOnEverySilo_ToTheSameStripes_AreLinearizablePerBlock()
    {
        var seed = Environment.TickCount;
        var v = await Cloud.Client.CreateVolumeAsync(
            new VolumeSpec("lin-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 16 << 10, false));
        // Six blocks over two stripes of 32 KiB of data; writes cover one or two neighbouring blocks.
        const int blockCount = 6;
        const int opsPerClient = 14;
        var histories = new ConcurrentDictionary<int, ConcurrentBag<RegisterOp>>();
        for (var b = 0; b < blockCount; b++) histories[b] = [];
        long nextValue = 0;
        var clients = Enumerable.Range(0, 6).Select(c => Task.Run(async () =>
        {
            var random = new Random(seed + c);
            var silo = Cloud.Silos[c % Cloud.Silos.Count];
            var fe = Cloud.FrontEnd(silo);
            for (var i = 0; i < opsPerClient; i++)
            {
                var block = random.Next(blockCount);
                var span = block < blockCount - 1 && random.Next(3) == 0 ? 2 : 1;
                if (random.Next(2) == 0)
                {
                    var value = Interlocked.Increment(ref nextValue);
                    var data = new byte[span * 4096];
                    for (var s = 0; s < span; s++)
                        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(s * 4096), value);
                    var invoked = Stopwatch.GetTimestamp();
                    await fe.WriteAsync(v.Name, block * 4096L, data, forceUnitAccess: random.Next(4) == 0);
                    var completed = Stopwatch.GetTimestamp();
                    for (var s = 0; s < span; s++)
                        histories[block + s].Add(
                            new RegisterOp(true, value, invoked, completed, $"{silo.Name} w{value}"));
                }
                else
                {
                    var invoked = Stopwatch.GetTimestamp();
                    var data = await fe.ReadAsync(v.Name, block * 4096L, span * 4096);
                    var completed = Stopwatch.GetTimestamp();
                    for (var s = 0; s < span; s++)
                    {
                        var value = BinaryPrimitives.ReadInt64LittleEndian(data.AsSpan(s * 4096));
                        histories[block + s].Add(
                            new RegisterOp(false, value, invoked, completed, $"{silo.Name} r{value}"));
                    }
                }
            }
        })).ToArray();
        await Task.WhenAll(clients);

        for (var b = 0; b < blockCount; b++)
        {
            var ops = histories[b].OrderBy(o => o.InvokedTicks).ToList();
            Assert.True(RegisterChecker.IsLinearizable(ops, 0, out var why), $"block {b} (seed {seed}): {why}");
        }
    }
}
