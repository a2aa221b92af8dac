using Cloud.Azure.Tests.Infrastructure;
using Cloud.Storage.Azure;
using Cloud.Storage.Devices;
using Cloud.Storage.Format;
using Cloud.Storage.Layout;
using Cloud.Storage.Volumes;
using Xunit.Abstractions;

namespace Cloud.Azure.Tests;

/// <summary>
/// The engine's <see cref="RaidVolume"/> over page blobs in Azurite: a lost blob (deleted, or unreachable)
/// leaves the volume degraded but correct, a rebuild onto a new blob restores redundancy, and file and
/// page-blob members mix in one volume.
/// </summary>
[Collection(AzuriteCollection.Name)]
public sealed class PageBlobRaidTests(AzuriteFixture fixture, ITestOutputHelper output) : IDisposable
{
    private const int Block = 4096;
    private const int ChunkBytes = 16 * 1024;
    private const long Stripes = 40;

    /// <summary>
    /// Blocks in one random write at most: up to two stripes of data, so some writes are full-stripe and some
    /// read-modify-write.
    /// </summary>
    private const int MaxBlocksPerWrite = 24;

    private static readonly long MemberBytes = OnDiskFormat.DataOffsetBytes + Stripes * OnDiskFormat.ChunkStrideBytes(
        ChunkBytes);

    private readonly string _dir = Directory.CreateTempSubdirectory("cloud-raid-blobs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Raid5OverPageBlobs_SurvivesADeletedBlob_RebuildsOntoANewOne_ThenSurvivesAnUnreachableBlob()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var connection = fixture.Connect();
        var container = fixture.NewContainerName();

        // Member 2 reaches Azurite through a proxy, so that it can later be cut off while its blob stays intact.
        var member2Unreachable = false;
        await using var proxy = new FaultProxy(
            fixture.Azurite.Port,
            _ => Volatile.Read(ref member2Unreachable) ? ProxyFault.DropBeforeForward : ProxyFault.None);
        var viaProxy = fixture.Connect(viaPort: proxy.Port);

        var devices = new List<IBlockDevice>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                devices.Add(
                    await (i == 2 ? viaProxy : connection).OpenDeviceAsync(container, $"vol/m{i}", MemberBytes));
            }

            var definition = new VolumeDefinition(
                "blobs", Guid.NewGuid(), new VolumeGeometry(RaidLevel.Raid5, 4, ChunkBytes));
            await using RaidVolume volume = await RaidVolume.CreateAsync(definition, devices);
            Assert.Equal(Stripes, volume.StripeCount);
            var model = new byte[volume.CapacityBytes];
            await RandomWritesAsync(volume, model, random, 30);
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed}, healthy");

            // Loss 1: the blob of member 1 is deleted. The next I/O that touches it fails the member.
            var generationBefore = volume.Generation;
            await connection.GetPageBlobClient(container, "vol/m1").DeleteAsync();
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed}, member 1 deleted");
            Assert.Equal(MemberState.Failed, volume.Members[1].State);
            Assert.Contains("gone", volume.Members[1].Reason);
            Assert.Equal(VolumeHealth.Degraded, volume.Health);
            Assert.True(
                volume.Generation > generationBefore,
                "failing a member rewrites the superblocks with a new generation");
            await RandomWritesAsync(volume, model, random, 20);
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed}, writes while member 1 is gone");

            // Rebuild onto a new blob while the volume stays in use.
            var replacement = await connection.OpenDeviceAsync(container, "vol/m1-replacement", MemberBytes);
            devices.Add(replacement);
            await volume.ReplaceMemberAsync(1, replacement);
            Assert.Equal(VolumeHealth.Rebuilding, volume.Health);
            await RandomWritesAsync(volume, model, random, 5);
            await volume.RebuildAsync();
            Assert.Equal(VolumeHealth.Healthy, volume.Health);
            Assert.Equal(MemberState.Active, volume.Members[1].State);
            ScrubReport scrub = await volume.ScrubAsync(repair: false);
            output.WriteLine($"scrub after rebuild: {scrub}");
            Assert.Equal(Stripes, scrub.StripesChecked);
            Assert.Equal(0, scrub.ParityMismatches);
            Assert.Equal(0, scrub.ChecksumErrors);
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed}, after rebuild");

            // Loss 2: another member's blob becomes unreachable (every connection to it is reset). The
            // rebuilt member now carries its share of every stripe.
            Volatile.Write(ref member2Unreachable, true);
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed}, member 2 unreachable");
            Assert.Equal(MemberState.Failed, volume.Members[2].State);
            Assert.Equal(VolumeHealth.Degraded, volume.Health);
            await RandomWritesAsync(volume, model, random, 10);
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed}, writes while member 2 is unreachable");
            Assert.True(proxy.Count(ProxyFault.DropBeforeForward) > 0, "the proxy cut member 2 off");
            await volume.FlushAsync();
            await volume.DisposeAsync();

            // The superblocks on the blobs recorded all of it: assembled from blobs alone (member 2 still
            // unreachable counts as absent), the volume knows the replacement and reads the same bytes.
            IBlockDevice?[] given = [devices[0], replacement, devices[2], devices[3]];
            await using RaidVolume assembled = await RaidVolume.AssembleAsync(given);
            Assert.Equal(VolumeHealth.Degraded, assembled.Health);
            Assert.Equal(MemberState.Active, assembled.Members[1].State);
            Assert.NotEqual(MemberState.Active, assembled.Members[2].State);
            AssertSame(model, await ReadAllAsync(assembled), $"seed {seed}, reassembled from the blobs");
        }
        finally
        {
            foreach (IBlockDevice device in devices)
            {
                await device.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task MixedFileAndPageBlobMembers_FromDescriptors_WriteReadReassembleAndScrubClean()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var factory = new BlockDeviceFactory(new PageBlobAccountOptions
        {
            ConnectionString = fixture.Azurite.ConnectionString(),
            Device = AzuriteFixture.FastRetryOptions(),
        });
        var container = fixture.NewContainerName();
        string[] descriptors =
        [
            $"file:{Path.Combine(_dir, "m0.img")}",
            $"pageblob:{container}/mixed/m1",
            $"file:{Path.Combine(_dir, "m2.img")}",
            $"pageblob:{container}/mixed/m3",
        ];
        var definition = new VolumeDefinition(
            "mixed", Guid.NewGuid(), new VolumeGeometry(RaidLevel.Raid5, descriptors.Length, ChunkBytes));
        byte[] model;

        IBlockDevice[] created = await OpenAllAsync(factory, descriptors, MemberBytes);
        try
        {
            Assert.Equal(
                [
                    typeof(FileBlockDevice), typeof(PageBlobBlockDevice),
                    typeof(FileBlockDevice), typeof(PageBlobBlockDevice),
                ],
                created.Select(d => d.GetType()));
            await using RaidVolume volume = await RaidVolume.CreateAsync(definition, created);
            model = new byte[volume.CapacityBytes];
            await RandomWritesAsync(volume, model, random, 40);
            AssertSame(model, await ReadAllAsync(volume), $"seed {seed}, mixed volume");
            await volume.FlushAsync();
        }
        finally
        {
            await DisposeAllAsync(created);
        }

        // Reopened from the descriptors alone (no capacities), as a silo assembling the volume would.
        IBlockDevice[] reopened = await OpenAllAsync(factory, descriptors, capacityBytes: null);
        try
        {
            await using RaidVolume assembled = await RaidVolume.AssembleAsync(reopened);
            Assert.Equal(definition.VolumeId, assembled.Definition.VolumeId);
            Assert.Equal(VolumeHealth.Healthy, assembled.Health);
            AssertSame(model, await ReadAllAsync(assembled), $"seed {seed}, reassembled");

            await RandomWritesAsync(assembled, model, random, 10);
            ScrubReport scrub = await assembled.ScrubAsync(repair: false);
            output.WriteLine($"scrub: {scrub}");
            Assert.Equal(Stripes, scrub.StripesChecked);
            Assert.Equal(0, scrub.ParityMismatches);
            Assert.Equal(0, scrub.ChecksumErrors);
            AssertSame(model, await ReadAllAsync(assembled), $"seed {seed}, after writes on the reassembled volume");
        }
        finally
        {
            await DisposeAllAsync(reopened);
        }
    }

    private static async Task<IBlockDevice[]> OpenAllAsync(
        BlockDeviceFactory factory,
        string[] descriptors,
        long? capacityBytes)
    {
        var devices = new List<IBlockDevice>();
        try
        {
            foreach (var descriptor in descriptors)
            {
                devices.Add(await factory.OpenAsync(descriptor, capacityBytes));
            }
            return [.. devices];
        }
        catch
        {
            await DisposeAllAsync(devices);
            throw;
        }
    }

    private static async Task DisposeAllAsync(IEnumerable<IBlockDevice> devices)
    {
        foreach (IBlockDevice device in devices)
        {
            await device.DisposeAsync();
        }
    }

    /// <summary>Writes <paramref name="count"/> random block-aligned extents into the volume and the model.</summary>
    private static async Task RandomWritesAsync(IBlockVolume volume, byte[] model, Random random, int count)
    {
        var blocks = volume.CapacityBytes / Block;
        for (var i = 0; i < count; i++)
        {
            var length = random.Next(1, MaxBlocksPerWrite + 1);
            var first = random.NextInt64(blocks - length + 1);
            var data = new byte[length * Block];
            random.NextBytes(data);
            await volume.WriteAsync(first * Block, data);
            data.CopyTo(model, first * Block);
        }
    }

    private static async Task<byte[]> ReadAllAsync(IBlockVolume volume)
    {
        var all = new byte[volume.CapacityBytes];
        var step = Math.Min(volume.MaxIoSizeBytes, 1 << 20);
        for (var pos = 0; pos < all.Length; pos += step)
        {
            await volume.ReadAsync(pos, all.AsMemory(pos, Math.Min(step, all.Length - pos)));
        }
        return all;
    }

    private static void AssertSame(byte[] expected, byte[] actual, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        var i = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(i == expected.Length, $"{context}: first difference at byte {i} (block {i / Block})");
    }
}
