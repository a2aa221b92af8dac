using Cloud.Storage.Devices;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using static Cloud.Storage.Tests.Volumes.VolumeFixture;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// A forced-unit-access write (every write of a durable volume) flushes the members it wrote, not every member: a
/// random 4 KiB write of a RAID-5 4+1 touches its data member and the parity member, and flushing the other three
/// (each a request to another host, for a volume across hosts) made it durable no sooner. A flush still reaches every
/// member with a write no flush has covered.
/// </summary>
public sealed class FlushScopeTests
{
    /// <summary>A member that counts its flushes.</summary>
    private sealed class CountingDevice(IBlockDevice inner) : IBlockDevice
    {
        private long _flushes;

        public long Flushes => Interlocked.Read(ref _flushes);

        public string Name => inner.Name;

        public int SectorSizeBytes => inner.SectorSizeBytes;

        public long CapacityBytes => inner.CapacityBytes;

        public int MaxInFlightIo => inner.MaxInFlightIo;

        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default) =>
            inner.ReadAsync(offsetBytes, destination, cancellationToken);

        public ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) =>
            inner.WriteAsync(offsetBytes, source, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _flushes);
            return inner.FlushAsync(cancellationToken);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static string Flushed(CountingDevice[] members, long[] before) =>
        string.Join(", ", members.Select((m, i) => $"m{i} {m.Flushes - before[i]}"));

    [Fact]
    public async Task AForcedWrite_FlushesTheMembersItWrote_AndAFlushReachesEveryMemberWithAnUnflushedWrite()
    {
        const int chunk = 4096;
        var members = Members(5, chunk, 8).Select(d => new CountingDevice(d)).ToArray();
        // No write-intent log: its first-touch page writes flush every member on their own.
        await using var volume = await RaidVolume.CreateAsync(
            Definition(RaidLevel.Raid5, 5, chunk), members, new RaidVolumeOptions { WriteIntentLog = false });
        var layout = volume.Layout;
        await volume.WriteAsync(0, Blocks(1, 1));
        await volume.FlushAsync();

        var before = members.Select(m => m.Flushes).ToArray();
        await volume.WriteAsync(0, Blocks(1, 2), forceUnitAccess: true);
        var written = new[] { layout.DataMember(0, 0), layout.ParityMember(0) };
        for (var m = 0; m < members.Length; m++)
        {
            Assert.True(
                members[m].Flushes - before[m] == (written.Contains(m) ? 1 : 0),
                $"a forced 4 KiB write of member {written[0]} (parity on {written[1]}) flushed: {Flushed(members, before)}");
        }

        // Nothing written since: a flush has nothing to do.
        before = members.Select(m => m.Flushes).ToArray();
        await volume.FlushAsync();
        Assert.True(members.Select((d, i) => d.Flushes - before[i]).All(n => n == 0), $"an idle flush flushed: {Flushed(members, before)}");

        // A plain write, then a flush: the members it wrote, and only those, are flushed.
        before = members.Select(m => m.Flushes).ToArray();
        await volume.WriteAsync(chunk, Blocks(1, 3));
        await volume.FlushAsync();
        written = [layout.DataMember(0, 1), layout.ParityMember(0)];
        for (var m = 0; m < members.Length; m++)
        {
            Assert.True(
                members[m].Flushes - before[m] == (written.Contains(m) ? 1 : 0),
                $"a flush after a write of member {written[0]} (parity on {written[1]}) flushed: {Flushed(members, before)}");
        }
        var back = new byte[2 * chunk];
        await volume.ReadAsync(0, back);
        Assert.True(back.AsSpan(0, chunk).SequenceEqual(Blocks(1, 2)) && back.AsSpan(chunk).SequenceEqual(Blocks(1, 3)), "the writes do not read back");
    }

    private static byte[] Blocks(int count, int seed)
    {
        var data = new byte[count * 4096];
        new Random(seed).NextBytes(data);
        return data;
    }
}
