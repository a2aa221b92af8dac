using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Cloud.Nbd.Tests;

public sealed class OptionsTests
{
    [Fact]
    public void Defaults_AreValid_AndListenOnLoopback10809()
    {
        var o = new NbdServerOptions();
        Assert.True(new NbdServerOptionsValidator().Validate(null, o).Succeeded);
        Assert.Equal("127.0.0.1", o.Address);
        Assert.Equal(10809, o.Port);
    }

    [Theory]
    [InlineData("Port", "70000")]
    [InlineData("Port", "-2")]
    [InlineData("Address", "not-an-ip")]
    [InlineData("MaxPayloadBytes", "1000")]
    [InlineData("MaxInFlightRequestsPerConnection", "0")]
    [InlineData("MaxConnections", "0")]
    public void BadValue_IsRejected_NamingTheFieldAndTheValue(string field, string value)
    {
        var o = new NbdServerOptions();
        var property = typeof(NbdServerOptions).GetProperty(field)!;
        property.SetValue(o, property.PropertyType == typeof(int) ? int.Parse(value) : value);
        var result = new NbdServerOptionsValidator().Validate(null, o);
        Assert.True(result.Failed);
        Assert.Contains($"NbdServerOptions.{field} ", result.FailureMessage);
        Assert.Contains(value, result.FailureMessage);
    }

    [Fact]
    public async Task AddNbdServer_StartsWithTheHost_AndRejectsBadOptionsAtStart()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddSingleton<INbdExportResolver>(new MapResolver(new MemoryVolume("v1", 1 << 20)));
        builder.Services.AddNbdServer(o => o.Port = NbdServerOptions.AnyFreePort);
        using (var host = builder.Build())
        {
            await host.StartAsync();
            var server = host.Services.GetRequiredService<NbdServer>();
            Assert.NotNull(server.TcpEndPoint);
            await using (var client = await RawNbdClient.OpenAsync(server.TcpEndPoint!, "v1"))
            {
                Assert.Equal(1ul << 20, client.ExportSize);
            }
            await host.StopAsync();
        }

        var bad = Host.CreateApplicationBuilder();
        bad.Services.AddSingleton<INbdExportResolver>(new MapResolver());
        bad.Services.AddNbdServer(o => o.Port = 99999);
        using var badHost = bad.Build();
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => badHost.StartAsync());
        Assert.Contains("NbdServerOptions.Port 99999", e.Message);
    }
}
