using System.Net;
using System.Net.Sockets;

namespace Cloud.Testing;

/// <summary>Finds TCP ports that nothing is bound to right now, for servers the tests start.</summary>
/// <remarks>
/// The ports come from below the kernel's ephemeral range (<c>net.ipv4.ip_local_port_range</c>), chosen at random and
/// checked by binding them on every address. A port the kernel hands out itself (bind to port 0) is an ephemeral one:
/// released before the server binds it, it could be taken meanwhile as the local port of any outgoing connection,
/// which the many connections of parallel test assemblies make likely (CI: a silo's gateway refused with "Address
/// already in use"). Below the range only another explicit bind can take the port: another test's random choice.
/// </remarks>
public static class FreePorts
{
    /// <summary>How many ports below the ephemeral range the choice is made from.</summary>
    private const int Span = 12_000;

    private const int LowestPort = 1_024;

    /// <summary>Returns a port nothing is bound to.</summary>
    public static int Next() => Next(1)[0];

    /// <summary>Returns <paramref name="count"/> distinct ports nothing is bound to, held together while chosen.</summary>
    public static int[] Next(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var (low, high) = Range();
        var held = new List<Socket>(count);
        try
        {
            var ports = new int[count];
            for (var i = 0; i < count; i++)
            {
                for (var attempt = 0; ; attempt++)
                {
                    if (attempt == 1_000)
                        throw new InvalidOperationException($"no free TCP port found in {low}-{high} after 1,000 tries");
                    var port = Random.Shared.Next(low, high + 1);
                    if (TryHold(port) is { } socket)
                    {
                        held.Add(socket);
                        ports[i] = port;
                        break;
                    }
                }
            }
            return ports;
        }
        finally
        {
            foreach (var socket in held) socket.Dispose();
        }
    }

    /// <summary>The ports to choose from: the <see cref="Span"/> below the ephemeral range (default 20768-32767).</summary>
    private static (int Low, int High) Range()
    {
        var ephemeralLow = 32_768;
        try
        {
            var text = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split(
                (char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (text.Length >= 1 && int.TryParse(text[0], out var parsed)) ephemeralLow = parsed;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        var high = Math.Max(LowestPort + 1_000, ephemeralLow - 1);
        return (Math.Max(LowestPort, high - Span), high);
    }

    /// <summary>A socket bound to <paramref name="port"/> on every IPv4 address, or null when something holds it.</summary>
    private static Socket? TryHold(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(IPAddress.Any, port));
            socket.Listen(1);
            return socket;
        }
        catch (SocketException)
        {
            socket.Dispose();
            return null;
        }
    }
}
