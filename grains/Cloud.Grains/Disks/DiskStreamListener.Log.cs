using Microsoft.Extensions.Logging;

namespace Cloud.Grains.Disks;

public sealed partial class DiskStreamListener
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Disk stream listening on {Endpoint} ({Security})")]
    private static partial void LogListening(ILogger logger, string endpoint, string security);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Disk stream off (Cloud:DiskTransport is '{Transport}'): other silos reach this host's disks by grain calls")]
    private static partial void LogStreamOff(ILogger logger, string transport);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "Disk stream cannot listen on {Endpoint} ({Reason}); other silos reach this host's disks by grain calls")]
    private static partial void LogListenFailed(ILogger logger, string endpoint, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Disk stream connection from {Peer} refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, string peer, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Disk stream connection from {Peer} closed: {Reason}")]
    private static partial void LogProtocolError(ILogger logger, string peer, string reason);
}
