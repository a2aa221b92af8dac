using System.Net;
using Microsoft.Extensions.Options;

namespace Cloud.Nbd;

/// <summary>Where the NBD server listens and the limits it enforces on each client.</summary>
public sealed class NbdServerOptions
{
    /// <summary>The default listen address: loopback only, because NBD has no authentication.</summary>
    public const string DefaultAddress = "127.0.0.1";

    /// <summary>The IANA port for NBD.</summary>
    public const int DefaultPort = 10809;

    /// <summary>A <see cref="Port"/> value that turns the TCP listener off.</summary>
    public const int PortOff = 0;

    /// <summary>
    /// A <see cref="Port"/> value that binds any free port (see <see cref="NbdServer.TcpEndPoint"/>); for tests.
    /// </summary>
    public const int AnyFreePort = -1;

    public const int DefaultMaxConnections = 64;
    public const int DefaultMaxInFlightRequestsPerConnection = 64;
    public const long DefaultMaxInFlightBytesPerConnection = 64L << 20;
    public const int DefaultMaxPayloadBytes = 4 << 20;
    public const int MinMaxPayloadBytes = 1 << 20;
    public const int MaxMaxPayloadBytes = 1 << 25;
    public const int DefaultMaxOptionLengthBytes = 64 << 10;
    public const int DefaultMaxOptionsPerHandshake = 256;
    public static readonly TimeSpan DefaultHandshakeTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan DefaultShutdownTimeout = TimeSpan.FromSeconds(10);
    public const int DefaultSocketBufferBytes = 0;
    public const string DefaultCongestionControl = "cubic,reno";

    /// <summary>IP address to listen on (IPv4 or IPv6 literal). Default <see cref="DefaultAddress"/>.</summary>
    public string Address { get; set; } = DefaultAddress;

    /// <summary>
    /// TCP port: 1-65535; <see cref="PortOff"/> (0) turns TCP off; <see cref="AnyFreePort"/> (-1) binds a free port.
    /// Default <see cref="DefaultPort"/>.
    /// </summary>
    public int Port { get; set; } = DefaultPort;

    /// <summary>
    /// Optional path of a Unix domain socket to listen on as well (null or empty = none). At most 100 bytes.
    /// </summary>
    public string? UnixSocketPath { get; set; }

    /// <summary>Connections served at once (1-65536); further ones are closed at once. Default 64.</summary>
    public int MaxConnections { get; set; } = DefaultMaxConnections;

    /// <summary>
    /// Requests of one connection being served at once (1-4096); the reader waits beyond this. Default 64.
    /// </summary>
    public int MaxInFlightRequestsPerConnection { get; set; } = DefaultMaxInFlightRequestsPerConnection;

    /// <summary>
    /// Payload bytes of one connection's requests held in memory at once; at least <see cref="MaxPayloadBytes"/>,
    /// at most 4 GiB. Default 64 MiB.
    /// </summary>
    public long MaxInFlightBytesPerConnection { get; set; } = DefaultMaxInFlightBytesPerConnection;

    /// <summary>
    /// The maximum payload advertised in <c>NBD_INFO_BLOCK_SIZE</c>: the largest READ or WRITE accepted.
    /// 1 MiB to 32 MiB, a multiple of 64 KiB. Default 4 MiB.
    /// </summary>
    public int MaxPayloadBytes { get; set; } = DefaultMaxPayloadBytes;

    /// <summary>The largest option a client may send during the handshake (4 KiB-1 MiB). Default 64 KiB.</summary>
    public int MaxOptionLengthBytes { get; set; } = DefaultMaxOptionLengthBytes;

    /// <summary>
    /// Options one handshake may send before the server gives up on the client (1-65536). Default 256.
    /// </summary>
    public int MaxOptionsPerHandshake { get; set; } = DefaultMaxOptionsPerHandshake;

    /// <summary>Time a client has to finish the handshake (1 s to 1 h). Default 30 s.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = DefaultHandshakeTimeout;

    /// <summary>
    /// Time <see cref="NbdServer.StopAsync"/> waits for in-flight requests before it closes connections (0-10 min).
    /// Default 10 s.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = DefaultShutdownTimeout;

    /// <summary>
    /// Whether exports advertise <c>NBD_FLAG_CAN_MULTI_CONN</c>. Safe only when the resolver honours the flush
    /// contract described on <see cref="INbdExportResolver"/>. Default true.
    /// </summary>
    public bool AdvertiseMultiConnection { get; set; } = true;

    /// <summary>
    /// SO_SNDBUF and SO_RCVBUF of each connection in bytes; 0 leaves the kernel's auto-tuning on (0 or 64 KiB-64 MiB).
    /// Default 0.
    /// </summary>
    public int SocketBufferBytes { get; set; } = DefaultSocketBufferBytes;

    /// <summary>
    /// TCP congestion control for each TCP connection (Linux): a comma-separated list of algorithm names, the first one
    /// the kernel accepts is used; empty keeps the kernel's default (<c>net.ipv4.tcp_congestion_control</c>). When
    /// none is accepted the connection keeps the default and the server logs a warning once. Default
    /// <see cref="DefaultCongestionControl"/>: BBR's pacing caps a loopback connection well below what the server
    /// sends (see <c>TcpCongestion</c> and docs/NBD.md). Unprivileged processes may only choose algorithms listed in
    /// <c>net.ipv4.tcp_allowed_congestion_control</c>.
    /// </summary>
    public string CongestionControl { get; set; } = DefaultCongestionControl;

    /// <summary>
    /// TLS (<c>NBD_OPT_STARTTLS</c>): <see cref="NbdTlsMode.Off"/> refuses it, <see cref="NbdTlsMode.On"/> offers it,
    /// <see cref="NbdTlsMode.Require"/> refuses every option but STARTTLS and ABORT before it. On and Require need
    /// either <see cref="TlsCertificatePath"/> with <see cref="TlsKeyPath"/> (x509) or <see cref="TlsPskPath"/>
    /// (TLS-PSK), not both. Default <see cref="NbdTlsMode.Off"/>.
    /// </summary>
    public NbdTlsMode Tls { get; set; } = NbdTlsMode.Off;

    /// <summary>The server's certificate chain, PEM (leaf first), for x509 TLS; or null.</summary>
    public string? TlsCertificatePath { get; set; }

    /// <summary>The private key of <see cref="TlsCertificatePath"/>, PEM (PKCS#8, PKCS#1 or SEC1); or null.</summary>
    public string? TlsKeyPath { get; set; }

    /// <summary>
    /// CA certificates, PEM, that client certificates must chain to; when set, x509 clients must present one, and
    /// its subject's common name is the client's identity for per-volume access. Null: no client certificates.
    /// </summary>
    public string? TlsCaPath { get; set; }

    /// <summary>
    /// The TLS-PSK key file: one <c>identity:hexkey</c> a line, as <c>psktool</c> writes it and qemu and libnbd read
    /// it; the identity is the client's identity for per-volume access. Or null.
    /// </summary>
    public string? TlsPskPath { get; set; }
}

/// <summary>Whether the NBD server offers or requires TLS (<c>NBD_OPT_STARTTLS</c>).</summary>
public enum NbdTlsMode
{
    /// <summary>No TLS: STARTTLS is answered with NBD_REP_ERR_UNSUP.</summary>
    Off,

    /// <summary>TLS offered: clients may upgrade with STARTTLS or go on in plain text.</summary>
    On,

    /// <summary>
    /// TLS required: before STARTTLS every option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD, and
    /// NBD_OPT_EXPORT_NAME (which cannot be refused) closes the connection, as the protocol's TLS section says.
    /// </summary>
    Require,
}

/// <summary>Validates <see cref="NbdServerOptions"/>, naming each bad field and the values allowed.</summary>
public sealed class NbdServerOptionsValidator : IValidateOptions<NbdServerOptions>
{
    /// <summary>Longest Unix socket path Linux accepts (sun_path is 108 bytes; keep room for the terminator).</summary>
    public const int MaxUnixSocketPathBytes = 100;

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, NbdServerOptions options)
    {
        var errors = Collect(options);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>
    /// Throws <see cref="OptionsValidationException"/> listing every problem, or returns when the options are valid.
    /// </summary>
    public static void ThrowIfInvalid(NbdServerOptions options)
    {
        var errors = Collect(options);
        if (errors.Count > 0)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(NbdServerOptions), errors);
        }
    }

    private static List<string> Collect(NbdServerOptions o)
    {
        var errors = new List<string>();
        if (o.Port != NbdServerOptions.PortOff && !IPAddress.TryParse(o.Address, out _))
        {
            errors.Add(
                $"NbdServerOptions.Address '{o.Address}' is not an IP address; use an IPv4 or IPv6 literal such as 127.0.0.1 or ::1.");
        }
        if (o.Port is < NbdServerOptions.AnyFreePort or > 65535)
        {
            errors.Add(
                $"NbdServerOptions.Port {o.Port} is out of range; allowed: 1-65535, 0 (TCP off) or -1 (any free port).");
        }
        if (!string.IsNullOrEmpty(o.UnixSocketPath)
            && System.Text.Encoding.UTF8.GetByteCount(o.UnixSocketPath) > MaxUnixSocketPathBytes)
        {
            errors.Add(
                $"NbdServerOptions.UnixSocketPath '{o.UnixSocketPath}' is longer than {MaxUnixSocketPathBytes} bytes.");
        }
        Range(errors, nameof(o.MaxConnections), o.MaxConnections, 1, 65536);
        Range(errors, nameof(o.MaxInFlightRequestsPerConnection), o.MaxInFlightRequestsPerConnection, 1, 4096);
        Range(
            errors,
            nameof(o.MaxPayloadBytes),
            o.MaxPayloadBytes,
            NbdServerOptions.MinMaxPayloadBytes,
            NbdServerOptions.MaxMaxPayloadBytes);
        if (o.MaxPayloadBytes % (64 << 10) != 0)
        {
            errors.Add($"NbdServerOptions.MaxPayloadBytes {o.MaxPayloadBytes} is not a multiple of 65536.");
        }
        if (o.MaxInFlightBytesPerConnection < o.MaxPayloadBytes || o.MaxInFlightBytesPerConnection > 4L << 30)
        {
            errors.Add(
                $"NbdServerOptions.MaxInFlightBytesPerConnection {o.MaxInFlightBytesPerConnection} is out of range; allowed: MaxPayloadBytes ({o.MaxPayloadBytes}) to {4L << 30}.");
        }
        Range(errors, nameof(o.MaxOptionLengthBytes), o.MaxOptionLengthBytes, 4096, 1 << 20);
        Range(errors, nameof(o.MaxOptionsPerHandshake), o.MaxOptionsPerHandshake, 1, 65536);
        if (o.HandshakeTimeout < TimeSpan.FromSeconds(1) || o.HandshakeTimeout > TimeSpan.FromHours(1))
        {
            errors.Add(
                $"NbdServerOptions.HandshakeTimeout {o.HandshakeTimeout} is out of range; allowed: 00:00:01 to 01:00:00.");
        }
        if (o.ShutdownTimeout < TimeSpan.Zero || o.ShutdownTimeout > TimeSpan.FromMinutes(10))
        {
            errors.Add(
                $"NbdServerOptions.ShutdownTimeout {o.ShutdownTimeout} is out of range; allowed: 00:00:00 to 00:10:00.");
        }
        if (o.SocketBufferBytes != 0 && (o.SocketBufferBytes < 64 << 10 || o.SocketBufferBytes > 64 << 20))
        {
            errors.Add(
                $"NbdServerOptions.SocketBufferBytes {o.SocketBufferBytes} is out of range; allowed: 0 (kernel auto-tuning) or 65536-67108864.");
        }
        CollectTls(errors, o);
        foreach (var name in TcpCongestion.ParseList(o.CongestionControl))
        {
            if (!TcpCongestion.IsValidName(name))
            {
                errors.Add(
                    $"NbdServerOptions.CongestionControl entry '{name}' is not an algorithm name; allowed: comma-separated names of 1-15 characters a-z, 0-9 and _ (e.g. cubic,reno), or empty for the kernel's default.");
            }
        }
        return errors;
    }

    private static void CollectTls(List<string> errors, NbdServerOptions o)
    {
        if (!Enum.IsDefined(o.Tls))
        {
            errors.Add($"NbdServerOptions.Tls {(int)o.Tls} is not a mode; allowed: off, on, require.");
            return;
        }
        var x509 = !string.IsNullOrEmpty(o.TlsCertificatePath) || !string.IsNullOrEmpty(o.TlsKeyPath);
        var psk = !string.IsNullOrEmpty(o.TlsPskPath);
        if (o.Tls == NbdTlsMode.Off)
        {
            if (x509 || psk || !string.IsNullOrEmpty(o.TlsCaPath))
            {
                errors.Add(
                    "NbdServerOptions.Tls is off but TLS keys are given; set Tls to on or require (--nbd-tls on|require), or drop the key options.");
            }
            return;
        }
        if (x509 && psk)
        {
            errors.Add(
                "NbdServerOptions: both an x509 certificate (TlsCertificatePath/TlsKeyPath) and a PSK file (TlsPskPath) are given; one NBD endpoint serves one kind of TLS credentials, choose one.");
        }
        else if (!x509 && !psk)
        {
            errors.Add(
                $"NbdServerOptions.Tls is {o.Tls.ToString().ToLowerInvariant()} but no keys are given; allowed: TlsCertificatePath with TlsKeyPath (--nbd-tls-cert, --nbd-tls-key), or TlsPskPath (--nbd-tls-psk).");
        }
        else if (x509 && (string.IsNullOrEmpty(o.TlsCertificatePath) || string.IsNullOrEmpty(o.TlsKeyPath)))
        {
            errors.Add(
                "NbdServerOptions: x509 TLS needs both TlsCertificatePath and TlsKeyPath (--nbd-tls-cert and --nbd-tls-key).");
        }
        if (psk && !string.IsNullOrEmpty(o.TlsCaPath))
        {
            errors.Add(
                "NbdServerOptions.TlsCaPath verifies client certificates, which TLS-PSK does not use; drop it or use x509.");
        }
        foreach (var (field, path) in new[]
        {
            (nameof(o.TlsCertificatePath), o.TlsCertificatePath),
            (nameof(o.TlsKeyPath), o.TlsKeyPath),
            (nameof(o.TlsCaPath), o.TlsCaPath),
            (nameof(o.TlsPskPath), o.TlsPskPath),
        })
        {
            if (!string.IsNullOrEmpty(path) && !File.Exists(path))
            {
                errors.Add($"NbdServerOptions.{field} '{path}' does not exist; give a readable PEM or key file.");
            }
        }
        if (errors.Count == 0)
        {
            // The files themselves: a malformed PSK line or a certificate without its key is refused at start too.
            NbdTlsCredentials.TryLoad(o, out var loadError);
            if (loadError is not null)
            {
                errors.Add(loadError);
            }
        }
    }

    private static void Range(List<string> errors, string field, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            errors.Add($"NbdServerOptions.{field} {value} is out of range; allowed: {min}-{max}.");
        }
    }
}
