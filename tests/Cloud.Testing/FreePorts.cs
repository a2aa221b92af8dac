using System.Net;
using System.Net.Sockets;

namespace Cloud.Testing;

/// <summary>Finds TCP ports on 127.0.0.1 that nothing listens on right now.</summary>
/// <remarks>
/// The port is released before the caller binds it, so another process may take it in between;
/// callers that start servers retry on a bind failure.
/// </remarks>
public static class FreePorts
{
    /// <summary>Returns a port the kernel just handed out for 127.0.0.1.</summary>
    public static int Next()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>Returns <paramref name="count"/> distinct free ports, held open together so they differ.</summary>
    public static int[] Next(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var listeners = new TcpListener[count];
        try
        {
            var ports = new int[count];
            for (var i = 0; i < count; i++)
            {
                listeners[i] = new TcpListener(IPAddress.Loopback, 0);
                listeners[i].Start();
                ports[i] = ((IPEndPoint)listeners[i].LocalEndpoint).Port;
            }

            return ports;
        }
        finally
        {
            foreach (var listener in listeners)
            {
                listener?.Stop();
            }
        }
    }
}
