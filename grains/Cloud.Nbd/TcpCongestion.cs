using System.Net.Sockets;
using System.Text;

namespace Cloud.Nbd;

/// <summary>
/// A TCP connection's congestion control algorithm (Linux <c>TCP_CONGESTION</c>), chosen per connection.
/// </summary>
/// <remarks>
/// Why the NBD server chooses one: BBR, the default on some machines (this project's test machine among them),
/// paces each connection at its estimate of the path's bandwidth. Over loopback, a connection carrying 1 MiB read
/// replies settled at a pacing rate of about 29 Gbit/s, with many segments arriving out of order (most of the send
/// time went to segments pushed from ACK processing, which runs on the other CPU), and sequential reads stopped near
/// 2.9 GB/s whatever the server did; with CUBIC, Linux's usual default, the same server sent 4 GB/s and more. Block
/// storage runs over loopback and LANs, where loss-based
/// control is the norm. See docs/NBD.md.
/// </remarks>
internal static class TcpCongestion
{
    private const int IpProtoTcp = 6;
    private const int TcpCongestionOption = 13;

    /// <summary>The kernel's limit on an algorithm name, terminator included (TCP_CA_NAME_MAX).</summary>
    public const int MaxNameBytes = 16;

    /// <summary>True where the option exists (Linux).</summary>
    public static bool Supported => OperatingSystem.IsLinux();

    /// <summary>True for a name the kernel could know: 1-15 of a-z, 0-9 and _.</summary>
    public static bool IsValidName(string name)
        => name.Length is > 0 and < MaxNameBytes
            && name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_');

    /// <summary>Splits a comma-separated preference list ("cubic,reno"); empty entries are dropped.</summary>
    public static string[] ParseList(string? list)
        => (list ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The algorithm <paramref name="socket"/> uses, or null where the option does not exist.</summary>
    public static string? Get(Socket socket)
    {
        if (!Supported)
        {
            return null;
        }
        Span<byte> name = stackalloc byte[MaxNameBytes];
        var length = socket.GetRawSocketOption(IpProtoTcp, TcpCongestionOption, name);
        var end = name[..length].IndexOf((byte)0);
        return Encoding.ASCII.GetString(name[..(end < 0 ? length : end)]);
    }

    /// <summary>
    /// Sets the first algorithm of <paramref name="preferences"/> the kernel accepts for <paramref name="socket"/>.
    /// </summary>
    /// <returns>The algorithm set, or null with <paramref name="refusals"/> naming why each was refused.</returns>
    public static string? TrySet(Socket socket, IReadOnlyList<string> preferences, out string refusals)
    {
        var why = new StringBuilder();
        foreach (var name in preferences)
        {
            try
            {
                socket.SetRawSocketOption(IpProtoTcp, TcpCongestionOption, Encoding.ASCII.GetBytes(name));
                refusals = "";
                return name;
            }
            catch (SocketException e)
            {
                // ENOENT: not built or loaded; EPERM: not in net.ipv4.tcp_allowed_congestion_control for this user.
                why.Append(why.Length == 0 ? "" : "; ").Append($"{name}: {e.Message}");
            }
        }
        refusals = why.ToString();
        return null;
    }

    /// <summary>The algorithms an unprivileged process may choose (from /proc), for error messages.</summary>
    public static string Allowed()
    {
        try
        {
            return File.ReadAllText("/proc/sys/net/ipv4/tcp_allowed_congestion_control").Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }
}
