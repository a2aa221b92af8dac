using Cloud.Grains.Abstractions;

namespace Cloud.Grains.Tests;

/// <summary>A create that fails half-way removes the members it made, and only those.</summary>
[Collection(nameof(SharedCluster))]
public sealed class FailedCreateTests(SharedClusterFixture fixture)
{
    [Fact]
    public async Task CreateFailingOnItsThirdDisk_RemovesTheFilesItMade_AndKeepsOnesThatWereThere()
    {
        var dir = Directory.CreateTempSubdirectory("cloud-failed-create-").FullName;
        try
        {
            var made = Path.Combine(dir, "m0.img");
            var existing = Path.Combine(dir, "m1.img");
            await File.WriteAllBytesAsync(existing, new byte[4 << 20]);
            // A regular file where the third member's directory would have to be: creating it fails.
            var blocker = Path.Combine(dir, "not-a-directory");
            await File.WriteAllTextAsync(blocker, "x");
            var impossible = Path.Combine(blocker, "m2.img");
            var spec = new VolumeSpec(
                "half-" + Guid.NewGuid().ToString("N")[..6], 2 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false)
            {
                Disks = [$"file:{made}", $"file:{existing}", $"file:{impossible}"],
            };

            var error = await Assert.ThrowsAsync<CloudRequestException>(
                () => fixture.Cloud.Client.CreateVolumeAsync(spec));
            Assert.Contains(spec.Name, error.Message);
            Assert.False(File.Exists(made), $"{made} was made by the failed create and is still there");
            Assert.True(File.Exists(existing), $"{existing} was there before the create and must stay");
            Assert.DoesNotContain(await fixture.Cloud.Client.ListVolumesAsync(), v => v.Name == spec.Name);

            // Nothing left in the way: the same member paths (with a usable third) create a volume.
            var retry =
                spec with { Disks = [$"file:{made}", $"file:{existing}", $"file:{Path.Combine(dir, "m2.img")}"] };
            var info = await fixture.Cloud.Client.CreateVolumeAsync(retry);
            Assert.Equal(spec.Name, info.Name);
            await fixture.Cloud.Client.DeleteVolumeAsync(spec.Name);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
