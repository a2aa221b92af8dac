using Cloud.Client;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Tests;

public sealed class InputTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("64KiB", 64L << 10)]
    [InlineData("64K", 64L << 10)]
    [InlineData("1GiB", 1L << 30)]
    [InlineData("2G", 2L << 30)]
    [InlineData("3m", 3L << 20)]
    [InlineData("1TiB", 1L << 40)]
    public void Sizes_ParseBinarySuffixes(string text, long expected) => Assert.Equal(expected, Sizes.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("-1K")]
    [InlineData("1.5G")]
    [InlineData("12Q")]
    [InlineData("99999999999999T")]
    public void Sizes_RejectBadText_NamingIt(string text)
    {
        var ex = Assert.Throws<FormatException>(() => Sizes.Parse(text));
        Assert.Contains($"'{text}'", ex.Message);
    }

    [Fact]
    public void CloudOptionsValidator_NamesEachBadField()
    {
        var result = new CloudOptionsValidator().Validate(null, new CloudOptions
        {
            LockLease = TimeSpan.Zero,
            OverloadFactor = 0.5,
            MaxRequestBytes = 1000,
            MaxConcurrentBatches = 4,
            DataDirectory = " ",
        });
        Assert.True(result.Failed);
        var failures = string.Join("\n", result.Failures!);
        Assert.Contains("Cloud:LockLease is 00:00:00", failures);
        Assert.Contains("Cloud:OverloadFactor is 0.5", failures);
        Assert.Contains("Cloud:MaxRequestBytes is 1000", failures);
        Assert.Contains("Cloud:MaxConcurrentBatches is 4; allowed 8-1024.", failures);
        Assert.Contains("Cloud:DataDirectory is empty", failures);
        Assert.True(new CloudOptionsValidator().Validate(null, new CloudOptions()).Succeeded);
        var durable = new CloudOptionsValidator().Validate(null, new CloudOptions { MaxConcurrentDurableBatches = 8 });
        Assert.Equal(
            "Cloud:MaxConcurrentDurableBatches is 8; allowed from Cloud:MaxConcurrentBatches (16) to 1024.",
            Assert.Single(durable.Failures!));
    }
}
