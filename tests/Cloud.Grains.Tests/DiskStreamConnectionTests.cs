using System.Net;
using System.Net.Sockets;
using Cloud.Grains.Disks;

namespace Cloud.Grains.Tests;

/// <summary>The disk stream's client connection against a peer that behaves badly at the socket level.</summary>
public sealed class DiskStreamConnectionTests
{
    /// <summary>
    /// A peer that accepts the hello and closes at once ends the connection's receive loop as soon as it starts, and
    /// the loop breaks the connection. The loop used to start before the connection's watchdog timer was made, so a
    /// loop that ran first met a null watchdog, and the exception on its own thread ended the process (the test host
    /// in CI at 46424e1). Against that code these 50 connections crashed the test host here, as they did with a pause
    /// put between the thread's start and the timer.
    /// </summary>
    [Fact]
    public async Task PeerThatClosesRightAfterTheHello_LeavesABrokenConnection_WhoseRequestsFailCleanly()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var endpoint = (IPEndPoint)listener.LocalEndpoint;
        const int rounds = 50;
        var peer = Task.Run(async () =>
        {
            for (var i = 0; i < rounds; i++)
            {
                using var socket = await listener.AcceptSocketAsync();
                var hello = new byte[256];
                await socket.ReceiveAsync(hello);
                await socket.SendAsync(new byte[] { 0 });
                socket.Shutdown(SocketShutdown.Both);
            }
        });

        for (var i = 0; i < rounds; i++)
        {
            using var connection = await DiskStreamConnection.ConnectAsync(
                $"127.0.0.1:{endpoint.Port}",
                new byte[16],
                "writer",
                tls: null,
                connectTimeout: TimeSpan.FromSeconds(10),
                responseTimeout: TimeSpan.FromSeconds(10));
            await Eventually.TrueAsync(() => connection.IsBroken, "the connection sees its peer gone");
            var failure = await Assert.ThrowsAsync<DiskStreamBrokenException>(
                () => connection.FlushAsync("member.img"u8.ToArray()));
            Assert.Contains($"127.0.0.1:{endpoint.Port}", failure.Message);
        }
        await peer;
    }
}
