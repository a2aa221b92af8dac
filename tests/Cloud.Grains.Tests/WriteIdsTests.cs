using Cloud.Grains.FirstServers;

namespace Cloud.Grains.Tests;

/// <summary>Replicated writes' identities (<see cref="WriteIds"/>): unique under concurrency, valid version-8 UUIDs.</summary>
public sealed class WriteIdsTests
{
    [Fact]
    public async Task Identities_AreUniqueAcrossThreads_AndCarryVersion8AndTheRfcVariant()
    {
        const int perThread = 50_000;
        var batches = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            var ids = new Guid[perThread];
            for (var i = 0; i < perThread; i++) ids[i] = WriteIds.Next();
            return ids;
        })));
        var all = batches.SelectMany(b => b).ToList();
        Assert.Equal(all.Count, all.Distinct().Count());
        foreach (var id in all.Take(1000))
        {
            Assert.Equal(8, id.Version);
            Assert.Equal(0b10, (id.ToByteArray(bigEndian: true)[8] >> 6));
        }
        // One process, one prefix: the first eight bytes never change.
        var prefixes = all.Select(id => Convert.ToHexString(id.ToByteArray(bigEndian: true), 0, 8)).Distinct().Count();
        Assert.Equal(1, prefixes);
    }
}
