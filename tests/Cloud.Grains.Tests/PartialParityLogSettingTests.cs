using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Cloud.Storage.Format;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Cloud.Grains.Tests;

/// <summary>
/// Which volumes the cluster makes with the partial parity log (docs/WRITE-HOLE.md): RAID-5/6 spread over the hosts'
/// pools, unless <c>Cloud:PartialParityLog</c> is false; their members are sized for the log's area.
/// </summary>
public sealed class PartialParityLogSettingTests
{
    private static IOptions<CloudOptions> From(Dictionary<string, string?> configuration)
    {
        var services = new ServiceCollection()
            .AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(configuration).Build());
        services.AddOptions<CloudOptions>().BindConfiguration(CloudOptions.SectionName);
        return services.BuildServiceProvider().GetRequiredService<IOptions<CloudOptions>>();
    }

    // Member sizing reads nothing but the settings.
    private static RaidVolumeStoreFactory Factory(IOptions<CloudOptions> options) =>
        new(null!, null!, null!, null!, null!, null!, options);

    [Fact]
    public void Setting_IsOnByDefault_AndReadFromConfiguration()
    {
        Assert.True(From([]).Value.PartialParityLog);
        Assert.False(From(new() { ["Cloud:PartialParityLog"] = "false" }).Value.PartialParityLog);
    }

    [Fact]
    public void MemberSize_HasRoomForTheLog_OnlyForSpreadRaidFiveAndSix_AndNotWhenTurnedOff()
    {
        const int chunk = 64 << 10;
        var area = OnDiskFormat.PartialParityAreaBytes(OnDiskFormat.PartialParitySlotBytes(chunk));
        var raid5 = new VolumeSpec("v", 64 << 20, VolumeLevel.Raid5, 5, chunk, false);
        var raid6 = raid5 with { Level = VolumeLevel.Raid6, DiskCount = 6 };
        var raid1 = raid5 with { Level = VolumeLevel.Raid1, DiskCount = 2 };
        var on = Factory(From([]));
        var off = Factory(From(new() { ["Cloud:PartialParityLog"] = "false" }));
        Assert.Equal(on.MemberSizeBytes(raid5, spread: false) + area, on.MemberSizeBytes(raid5, spread: true));
        Assert.Equal(on.MemberSizeBytes(raid6, spread: false) + area, on.MemberSizeBytes(raid6, spread: true));
        Assert.Equal(on.MemberSizeBytes(raid1, spread: false), on.MemberSizeBytes(raid1, spread: true));
        Assert.Equal(off.MemberSizeBytes(raid5, spread: false), off.MemberSizeBytes(raid5, spread: true));
        Assert.Equal(on.MemberSizeBytes(raid5, spread: false), off.MemberSizeBytes(raid5, spread: true));
    }
}
