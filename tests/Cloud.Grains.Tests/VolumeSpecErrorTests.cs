using Cloud.Grains.Abstractions;

namespace Cloud.Grains.Tests;

public sealed class VolumeSpecErrorTests
{
    private static readonly VolumeSpec Good = new("v", 1 << 20, VolumeLevel.Raid5, 3, 64 << 10, false);

    public static TheoryData<VolumeSpec, string, string> BadSpecs() => new()
    {
        { Good with { Name = "-x" }, nameof(VolumeSpec.Name), "Name '-x' is not allowed; use 1-64 characters" },
        { Good with { Level = (VolumeLevel)7 }, nameof(VolumeSpec.Level), "Level 7 is not one of raid0, raid1, raid5, raid6" },
        { Good with { DiskCount = 2 }, nameof(VolumeSpec.DiskCount), "DiskCount 2 is not allowed for raid5; use 3-32" },
        { Good with { ChunkSizeBytes = 3000 }, nameof(VolumeSpec.ChunkSizeBytes), "ChunkSizeBytes 3000 is not a power of two between 4096 and 1048576" },
        { Good with { ChunkSizeBytes = 2 << 20 }, nameof(VolumeSpec.ChunkSizeBytes), "ChunkSizeBytes 2097152 is not a power of two between 4096 and 1048576" },
        { Good with { SizeBytes = 4097 }, nameof(VolumeSpec.SizeBytes), "SizeBytes 4097 is not a multiple of 4096 between 4096 and 70368744177664" },
    };

    [Theory]
    [MemberData(nameof(BadSpecs))]
    public void ARefusedSpec_NamesTheFieldAndItsValue(VolumeSpec spec, string field, string message)
    {
        var ex = Assert.Throws<CloudRequestException>(() => VolumeMath.Validate(spec));

        Assert.Equal(field, ex.Field);
        Assert.StartsWith(message, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AGoodSpec_IsAccepted() => VolumeMath.Validate(Good);
}
