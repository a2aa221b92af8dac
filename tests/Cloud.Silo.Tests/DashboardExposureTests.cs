using System.Net;

namespace Cloud.Silo.Tests;

/// <summary>
/// The Orleans Dashboard serves loopback only unless it has an HTTPS certificate and a user and password (issue 17,
/// item 5): it shows every grain and silo, so it never serves a network in the clear or without a password.
/// </summary>
public sealed class DashboardExposureTests
{
    [Fact]
    public void Dashboard_OnANonLoopbackHttpAddress_ListensOnLoopback_UnlessGivenACertificateAndCredentials()
    {
        var plain = new HttpEndpointOptions { Address = "10.1.2.3", Port = 8080, DashboardPort = 9000 };
        var secured = new HttpEndpointOptions
        {
            Address = "10.1.2.3",
            Port = 8080,
            DashboardPort = 9000,
            CertificateFile = "/etc/cloud/http.crt",
            KeyFile = "/etc/cloud/http.key",
            DashboardUser = "operator",
            DashboardPasswordFile = "/etc/cloud/dashboard.password",
        };

        Assert.Equal(IPAddress.Loopback, plain.DashboardAddress());
        Assert.Equal(IPAddress.Parse("10.1.2.3"), secured.DashboardAddress());
        Assert.Equal(IPAddress.Parse("127.0.0.5"), new HttpEndpointOptions { Address = "127.0.0.5" }.DashboardAddress());
    }

    [Fact]
    public void Dashboard_SharingTheHealthPortOffLoopback_WithoutCredentials_IsRefused()
    {
        var shared = new HttpEndpointOptions { Address = "10.1.2.3", Port = 8080, DashboardPort = 8080 };

        var result = new HttpEndpointOptionsValidator().Validate(null, shared);

        var failure = Assert.Single(result.Failures ?? []);
        Assert.Contains("--dashboard-port 8080 is the health port on --http-address 10.1.2.3", failure, StringComparison.Ordinal);
        // On loopback the shared port stays allowed, as before.
        Assert.True(new HttpEndpointOptionsValidator()
            .Validate(null, new HttpEndpointOptions { Port = 8080, DashboardPort = 8080 }).Succeeded);
    }

    [Fact]
    public void DashboardSecurity_GivenInPart_IsRefused_NamingAllFourSettings()
    {
        var partial = new HttpEndpointOptions { DashboardPort = 9000, DashboardUser = "operator" };

        var failure = Assert.Single(new HttpEndpointOptionsValidator().Validate(null, partial).Failures ?? []);

        Assert.Contains(
            "Http:CertificateFile, Http:KeyFile, Http:DashboardUser and Http:DashboardPasswordFile go together",
            failure,
            StringComparison.Ordinal);
    }

    [Fact]
    public void DashboardOnInDevelopment_SharingTheHealthPortOffLoopback_IsRefused()
    {
        // Unset, the dashboard port is 8080 in Development: the same as a health port of 8080.
        var options = new HttpEndpointOptions { Address = "10.1.2.3", Port = HttpEndpointOptions.DefaultDevelopmentDashboardPort };

        Assert.False(new HttpEndpointOptionsValidator(isDevelopment: true).Validate(null, options).Succeeded);
        Assert.True(new HttpEndpointOptionsValidator(isDevelopment: false).Validate(null, options).Succeeded);
    }
}
