using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Cloud.Silo;

/// <summary>
/// The address a silo listens on and advertises (<c>--address</c>, <c>Silo:Address</c>): an IP literal of this host,
/// or <c>auto</c>. Other silos and clients reach the silo at this address, so it must be one of this host's own: an
/// address of another host would be advertised in the membership table and every peer would dial a stranger.
/// </summary>
public static class HostAddress
{
    /// <summary>The value that asks for the host's own address.</summary>
    public const string Auto = "auto";

    /// <summary>
    /// Environment variables a platform sets to the container's or pod's own address, consulted in order by
    /// <see cref="Auto"/> before the network interfaces: <c>CLOUD_HOST_ADDRESS</c> (ours, for any platform),
    /// <c>POD_IP</c> (the Kubernetes downward-API convention) and <c>CONTAINER_APP_IP</c>.
    /// </summary>
    public static readonly string[] PlatformVariables = ["CLOUD_HOST_ADDRESS", "POD_IP", "CONTAINER_APP_IP"];

    /// <summary>
    /// Resolves <paramref name="text"/> to this host's address. Returns null and sets <paramref name="error"/> to one
    /// line naming the value and what is allowed when it is not an IP literal, not <c>auto</c>, or not this host's.
    /// </summary>
    public static IPAddress? Resolve(string? text, Func<string, string?> environment, out string? error)
    {
        ArgumentNullException.ThrowIfNull(environment);
        error = null;
        if (string.IsNullOrWhiteSpace(text)) return IPAddress.Loopback;
        var local = LocalAddresses();
        if (text.Equals(Auto, StringComparison.OrdinalIgnoreCase))
        {
            foreach (var variable in PlatformVariables)
            {
                if (environment(variable) is not { Length: > 0 } value) continue;
                if (!IPAddress.TryParse(value, out var given))
                {
                    error =
                        $"--address auto: {variable}='{value}' is not an IP address; unset it or give --address ADDR";
                    return null;
                }
                return Check(given, $"--address auto ({variable})", local, out error);
            }
            var primary = Primary(local);
            if (primary is null)
                error = "--address auto found no non-loopback IPv4 address on this host; give --address ADDR";
            return primary;
        }
        if (!IPAddress.TryParse(text, out var address))
        {
            error = $"--address '{text}' is not an IP address; use one of this host's addresses ({Describe(local)}) or auto";
            return null;
        }
        return Check(address, $"--address {text}", local, out error);
    }

    /// <summary>True when <paramref name="address"/> is a loopback address (all of 127.0.0.0/8, and ::1).</summary>
    public static bool IsLoopback(IPAddress address) => IPAddress.IsLoopback(address);

    private static IPAddress? Check(IPAddress address, string what, IReadOnlyList<IPAddress> local, out string? error)
    {
        error = null;
        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            error = $"{what} is the wildcard address; other silos cannot dial it: give this host's own address ({Describe(local)}) or auto";
            return null;
        }
        // Linux routes all of 127.0.0.0/8 to the loopback interface, so any of it is this host's (the multi-host bed
        // gives each silo its own: 127.0.0.11, 127.0.0.12, ...).
        if (IsLoopback(address) || local.Contains(address)) return address;
        error = $"{what} is not an address of this host; use one of {Describe(local)}, or auto";
        return null;
    }

    private static IPAddress? Primary(IReadOnlyList<IPAddress> local) =>
        local.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
        ?? local.FirstOrDefault(
            a => a.AddressFamily == AddressFamily.InterNetworkV6 && !IPAddress.IsLoopback(a) && !a.IsIPv6LinkLocal);

    private static List<IPAddress> LocalAddresses()
    {
        var list = new List<IPAddress>();
        try
        {
            // Interfaces that are up first, in the order the kernel lists them: the primary address comes from them.
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces()
                .Where(n => n.OperationalStatus != OperationalStatus.Down))
                list.AddRange(nic.GetIPProperties().UnicastAddresses.Select(u => u.Address));
        }
        catch (NetworkInformationException)
        {
            // Without interface information only loopback is known to be ours.
        }
        if (!list.Contains(IPAddress.Loopback)) list.Add(IPAddress.Loopback);
        return list;
    }

    private static string Describe(IReadOnlyList<IPAddress> local)
        => string.Join(", ", local.Where(a => !a.IsIPv6LinkLocal));
}
