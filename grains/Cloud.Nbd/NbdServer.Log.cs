using Microsoft.Extensions.Logging;

namespace Cloud.Nbd;

/// <summary>Source-generated log messages of the NBD server.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "NBD server listening on {Endpoint}")]
    public static partial void Listening(ILogger logger, string endpoint);

    [LoggerMessage(2, LogLevel.Information, "NBD server is off (Port 0 and no UnixSocketPath)")]
    public static partial void Disabled(ILogger logger);

    [LoggerMessage(3, LogLevel.Information, "NBD server stopped")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(4, LogLevel.Warning, "NBD shutdown timed out; closing {Count} connections with requests still in flight")]
    public static partial void ShutdownAbortingConnections(ILogger logger, int count);

    [LoggerMessage(5, LogLevel.Warning, "NBD accept failed: {Reason}")]
    public static partial void AcceptFailed(ILogger logger, string reason);

    [LoggerMessage(6, LogLevel.Warning, "NBD connection from {Remote} refused: {Max} connections already open (MaxConnections)")]
    public static partial void TooManyConnections(ILogger logger, string remote, int max);

    [LoggerMessage(7, LogLevel.Debug, "NBD connection {Id} accepted from {Remote}")]
    public static partial void Accepted(ILogger logger, long id, string remote);

    [LoggerMessage(23, LogLevel.Warning, "NBD connections keep the kernel's TCP congestion control ({Current}): none of CongestionControl '{Wanted}' was accepted ({Refusals}); allowed for this user: {Allowed}")]
    public static partial void CongestionControlRefused(
        ILogger logger,
        string current,
        string wanted,
        string refusals,
        string allowed);

    [LoggerMessage(8, LogLevel.Debug, "NBD connection {Id} from {Remote} closed")]
    public static partial void Closed(ILogger logger, long id, string remote);

    [LoggerMessage(9, LogLevel.Warning, "NBD connection {Id} from {Remote}: handshake not finished within {Timeout}; closing")]
    public static partial void HandshakeTimedOut(ILogger logger, long id, string remote, TimeSpan timeout);

    [LoggerMessage(10, LogLevel.Information, "NBD connection {Id} from {Remote}: {Reason}")]
    public static partial void ClientDisconnected(ILogger logger, long id, string remote, string reason);

    [LoggerMessage(11, LogLevel.Warning, "NBD connection {Id} from {Remote}: protocol violation, closing: {Reason}")]
    public static partial void ProtocolViolation(ILogger logger, long id, string remote, string reason);

    [LoggerMessage(12, LogLevel.Debug, "NBD connection {Id} from {Remote} stopped by the server")]
    public static partial void ConnectionStopped(ILogger logger, long id, string remote);

    [LoggerMessage(13, LogLevel.Error, "NBD connection {Id} from {Remote} failed")]
    public static partial void ConnectionFailed(ILogger logger, Exception exception, long id, string remote);

    [LoggerMessage(14, LogLevel.Warning, "NBD: releasing volume {Volume} failed")]
    public static partial void ReleaseFailed(ILogger logger, Exception exception, string volume);

    [LoggerMessage(15, LogLevel.Debug, "NBD connection {Id}: {Option} ({Length} bytes)")]
    public static partial void Option(ILogger logger, long id, string option, uint length);

    [LoggerMessage(16, LogLevel.Information, "NBD connection {Id}: {Option} refused with error {Error}: {Message}")]
    public static partial void OptionRefused(ILogger logger, long id, string option, uint error, string message);

    [LoggerMessage(17, LogLevel.Debug, "NBD connection {Id} from {Remote} aborted the handshake")]
    public static partial void ClientAborted(ILogger logger, long id, string remote);

    [LoggerMessage(18, LogLevel.Information, "NBD connection {Id} from {Remote} serves volume {Volume} ({SizeBytes} bytes, structured replies {Structured})")]
    public static partial void Exporting(
        ILogger logger,
        long id,
        string remote,
        string volume,
        long sizeBytes,
        bool structured);

    [LoggerMessage(19, LogLevel.Debug, "NBD connection {Id} from {Remote} sent NBD_CMD_DISC")]
    public static partial void ClientDisconnecting(ILogger logger, long id, string remote);

    [LoggerMessage(20, LogLevel.Warning, "NBD connection {Id}: {Command} at {Offset} length {Length} failed")]
    public static partial void RequestFailed(
        ILogger logger,
        Exception exception,
        long id,
        string command,
        ulong offset,
        uint length);

    [LoggerMessage(21, LogLevel.Debug, "NBD connection {Id}: {Command} at {Offset} length {Length} refused with error {Error}: {Message}")]
    public static partial void RequestRefused(
        ILogger logger,
        long id,
        string command,
        ulong offset,
        uint length,
        uint error,
        string message);

    [LoggerMessage(22, LogLevel.Information, "NBD connection {Id}: reply to {Command} not delivered ({Reason}); closing")]
    public static partial void ReplyFailed(ILogger logger, long id, string command, string reason);

    [LoggerMessage(23, LogLevel.Information, "NBD connection {Id} from {Remote}: TLS ({Kind}, {CipherSuite}) started, client identity {Identity}")]
    public static partial void TlsStarted(ILogger logger, long id, string remote, string kind, string cipherSuite, string identity);

    [LoggerMessage(24, LogLevel.Information, "NBD connection {Id}: export '{Export}' refused to client identity {Identity} (no grant)")]
    public static partial void AccessDenied(ILogger logger, long id, string export, string identity);

    [LoggerMessage(25, LogLevel.Information, "NBD TLS {Mode} with {Kind} credentials")]
    public static partial void TlsEnabled(ILogger logger, string mode, string kind);
}
