using System.Net;
using System.Net.Sockets;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>
/// The ports the tests give their servers: outside the kernel's ephemeral range, where an outgoing connection of
/// another test can take a port between its choice and the server's bind (CI saw a silo's gateway refused so).
/// </summary>
public sealed class FreePortsTests
{
    [Fact]
    public void Ports_AreDistinct_BelowTheEphemeralRange_AndBindable()
    {
        var ephemeralLow = int.Parse(
            File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0]);
        var ports = FreePorts.Next(64);
        Assert.Equal(ports.Length, ports.Distinct().Count());
        Assert.All(ports, p => Assert.InRange(p, 1_024, ephemeralLow - 1));
        foreach (var port in ports.Take(8))
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            Assert.Equal(port, ((IPEndPoint)listener.LocalEndpoint).Port);
        }
    }
}
