using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Cloud.Nbd.Tests;

/// <summary>
/// The server's per-connection TCP congestion control (<see cref="NbdServerOptions.CongestionControl"/>).
/// </summary>
public sealed class CongestionControlTests
{
    private static string KernelDefault => File.ReadAllText("/proc/sys/net/ipv4/tcp_congestion_control").Trim();

    /// <summary>A connected loopback pair: the listener's accepted end and the client end.</summary>
    private static async Task<(Socket Accepted, Socket Client)> PairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync();
        await client.ConnectAsync(listener.LocalEndPoint!);
        return (await accept, client);
    }

    [Fact]
    public async Task TrySet_UsesTheFirstAlgorithmTheKernelAccepts_AndNamesEachRefusal()
    {
        // reno is built into every Linux kernel and always allowed, privileged or not.
        var (accepted, client) = await PairAsync();
        using (accepted)
        using (client)
        {
            Assert.Equal("reno", TcpCongestion.TrySet(accepted, ["no_such_cc", "reno"], out var refusals));
            Assert.Equal("reno", TcpCongestion.Get(accepted));

            Assert.Null(TcpCongestion.TrySet(client, ["no_such_cc", "nor_this"], out refusals));
            Assert.Contains("no_such_cc: ", refusals);
            Assert.Contains("nor_this: ", refusals);
            Assert.Equal(KernelDefault, TcpCongestion.Get(client));
        }
    }

    [Theory]
    [InlineData("reno", "reno")]
    [InlineData("no_such_cc,reno", "reno")]
    [InlineData("", null)]
    [InlineData("no_such_cc", null)]
    public async Task ServerConnections_UseTheConfiguredAlgorithm_OrKeepTheKernelDefault(
        string configured,
        string? expected)
    {
        var ss = Tools.Require("ss", "iproute2");
        await using var server = await TestServer.StartAsync(
            o => o.CongestionControl = configured, new MemoryVolume("v1", 1 << 20));
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        // The server's end of this connection is the socket whose source port is the server's.
        var result = (await Tools.RunAsync(ss, ["-tni", "state", "established", $"( sport = :{server.Port} )"]))
            .AssertSuccess("ss");
        var info = result.Output.Split('\n').Select(l => l.Trim())
            .Where(l => l.Contains("wscale:") || l.Contains("rtt:"))
            .ToList();
        Assert.True(info.Count == 1, $"expected one server-side connection in:\n{result.Output}");
        Assert.StartsWith((expected ?? KernelDefault) + " ", info[0]);

        // The connection serves requests either way.
        var reply = await client.ReadBlockAsync(1, 0, 4096);
        Assert.Equal(0u, reply.Error);
    }

    /// <summary>Keeps every message logged at warning or above.</summary>
    private sealed class WarningLog : ILogger<NbdServer>
    {
        public List<string> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(
            LogLevel logLevel,
            EventId eventId,
            TState state,
            Exception? exception,
            Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                lock (Messages)
                {
                    Messages.Add(formatter(state, exception));
                }
            }
        }
    }

    [Fact]
    public async Task RefusedAlgorithms_AreLoggedOnce_NamingEachRefusalAndTheAllowedList()
    {
        var log = new WarningLog();
        var options = new NbdServerOptions
        {
            Port = NbdServerOptions.AnyFreePort,
            CongestionControl = "no_such_cc,nor_this"
        };
        await using var server = new NbdServer(
            new MapResolver(new MemoryVolume("v1", 1 << 20)), Options.Create(options), log);
        await server.StartAsync();
        for (var i = 0; i < 3; i++)
        {
            await using var client = await RawNbdClient.OpenAsync(server.TcpEndPoint!, "v1");
            Assert.Equal(0u, (await client.ReadBlockAsync(1, 0, 4096)).Error);
        }
        string warning;
        lock (log.Messages)
        {
            warning = Assert.Single(log.Messages, m => m.Contains("congestion control"));
        }
        Assert.Contains($"({KernelDefault})", warning);
        Assert.Contains("no_such_cc: ", warning);
        Assert.Contains("nor_this: ", warning);
        Assert.Contains(
            "allowed for this user: " + File.ReadAllText("/proc/sys/net/ipv4/tcp_allowed_congestion_control").Trim(),
            warning);
    }

    [Theory]
    [InlineData("Cubic")]
    [InlineData("cubic,,re no")]
    [InlineData("a_name_far_too_long")]
    public void BadAlgorithmName_IsRejected_NamingTheEntryAndWhatIsAllowed(string value)
    {
        var result = new NbdServerOptionsValidator().Validate(null, new NbdServerOptions { CongestionControl = value });
        Assert.True(result.Failed);
        Assert.Contains("NbdServerOptions.CongestionControl entry '", result.FailureMessage);
        Assert.Contains("a-z, 0-9 and _", result.FailureMessage);
    }

    [Fact]
    public void Default_PrefersCubicThenReno()
        => Assert.Equal(["cubic", "reno"], TcpCongestion.ParseList(new NbdServerOptions().CongestionControl));
}
