using System.Collections.Concurrent;
using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using static Cloud.Nbd.NbdProtocol;

namespace Cloud.Nbd;

/// <summary>
/// One client connection: the fixed newstyle handshake, then the transmission phase. One reader loop parses
/// requests in order; each request then runs on its own (reads and writes proceed concurrently), with a bound on
/// requests and payload bytes in flight, and queues its reply as it completes; whichever thread finds no sender
/// running sends the queue (see <c>QueueReply</c>), so replies never interleave and no lock is handed over.
/// </summary>
internal sealed partial class NbdConnection
{
    private static readonly UTF8Encoding StrictUtf8 = new(
        encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Zeroes for NBD_CMD_WRITE_ZEROES with NO_HOLE, written in pieces of this size.</summary>
    private static readonly byte[] Zeroes = new byte[1 << 20];

    private readonly Socket _socket;
    private readonly SocketReader _reader;
    private readonly INbdExportResolver _resolver;
    private readonly NbdServerOptions _options;
    private readonly ILogger _logger;

    /// <summary>The server's TLS credentials, or null when TLS is off.</summary>
    private readonly NbdTlsCredentials? _tls;

    /// <summary>The TLS session after STARTTLS, or null: then everything goes straight through the socket.</summary>
    private Stream? _stream;

    /// <summary>
    /// The client's identity for per-volume access once TLS has authenticated one (PSK identity or certificate
    /// common name); null for a client without one.
    /// </summary>
    private string? _identity;

    /// <summary>Transmission-phase replies waiting for the socket (see <c>QueueReply</c>).</summary>
    private readonly ConcurrentQueue<OutgoingReply> _outgoing = new();

    /// <summary>1 while a thread sends the queued replies.</summary>
    private int _sending;

    /// <summary>Set once a send failed: later replies are dropped (the connection is being aborted).</summary>
    private volatile bool _sendFailed;
    private readonly SemaphoreSlim _progress = new(0, int.MaxValue);
    private readonly CancellationToken _stopReading;
    private readonly CancellationTokenSource _abort;

    private bool _structuredReplies;
    private bool _noZeroes;
    private NbdExport? _export;
    private ushort _transmissionFlags;

    // In-flight accounting: only the reader loop adds, completions subtract.
    private int _inFlightRequests;
    private long _inFlightBytes;
    private int _readerWaiting;

    public NbdConnection(long id, Socket socket, string remote, INbdExportResolver resolver, NbdServerOptions options,
        NbdTlsCredentials? tls,
        ILogger logger,
        CancellationToken stopReading, CancellationToken abort)
    {
        _tls = tls;
        Id = id;
        Remote = remote;
        _socket = socket;
        _reader = new SocketReader(socket);
        _resolver = resolver;
        _options = options;
        _logger = logger;
        _stopReading = stopReading;
        _abort = CancellationTokenSource.CreateLinkedTokenSource(abort);
    }

    public long Id { get; }

    public string Remote { get; }

    /// <summary>Runs the connection to its end; never throws.</summary>
    public async Task RunAsync()
    {
        try
        {
            if (await HandshakeInTimeAsync().ConfigureAwait(false))
            {
                await TransmitAsync().ConfigureAwait(false);
            }
        }
        catch (NbdDisconnectedException e)
        {
            Log.ClientDisconnected(_logger, Id, Remote, e.Message);
        }
        catch (NbdProtocolException e)
        {
            Log.ProtocolViolation(_logger, Id, Remote, e.Message);
        }
        catch (OperationCanceledException)
        {
            Log.ConnectionStopped(_logger, Id, Remote);
        }
        catch (SocketException e)
        {
            Log.ClientDisconnected(_logger, Id, Remote, e.Message);
        }
        catch (IOException e) when (_stream is not null)
        {
            // A TLS session cut without close_notify, or a bad record: the client is gone or no longer in step.
            Log.ClientDisconnected(_logger, Id, Remote, e.Message);
        }
        catch (ObjectDisposedException)
        {
            Log.ConnectionStopped(_logger, Id, Remote);
        }
        catch (Exception e)
        {
            Log.ConnectionFailed(_logger, e, Id, Remote);
        }
        finally
        {
            await CloseAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The handshake within the configured timeout; false when it ended without transmission or timed out.</summary>
    private async Task<bool> HandshakeInTimeAsync()
    {
        using var handshakeCts = CancellationTokenSource.CreateLinkedTokenSource(_stopReading, _abort.Token);
        handshakeCts.CancelAfter(_options.HandshakeTimeout);
        try
        {
            return await HandshakeAsync(handshakeCts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
            when (handshakeCts.IsCancellationRequested
                && !_stopReading.IsCancellationRequested
                && !_abort.IsCancellationRequested)
        {
            Log.HandshakeTimedOut(_logger, Id, Remote, _options.HandshakeTimeout);
            return false;
        }
    }

    /// <summary>
    /// Closes the socket at once; in-flight work ends with errors. Used when the server gives up waiting.
    /// </summary>
    public void Abort()
    {
        try
        {
            _abort.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        _socket.Dispose();
    }

    private async ValueTask CloseAsync()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        if (_stream is not null)
        {
            try
            {
                await _stream.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
            {
            }
        }
        _socket.Dispose();
        if (_export is { } export)
        {
            _export = null;
            try
            {
                await _resolver.ReleaseAsync(export.Volume).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                Log.ReleaseFailed(_logger, e, export.Name);
            }
        }
        _abort.Dispose();
    }

    // ------------------------------------------------------------------ handshake

    /// <summary>Runs option haggling; true when the client entered the transmission phase.</summary>
    private async Task<bool> HandshakeAsync(CancellationToken ct)
    {
        await GreetAsync(ct).ConfigureAwait(false);
        var header = new byte[16];
        for (var optionIndex = 0; optionIndex < _options.MaxOptionsPerHandshake; optionIndex++)
        {
            var (option, data) = await ReadOptionAsync(header, ct).ConfigureAwait(false);
            if (data is null)
            {
                // Refused and answered already.
                continue;
            }
            if (await HandleOptionAsync(option, data, ct).ConfigureAwait(false) is { } transmission)
            {
                return transmission;
            }
        }
        throw new NbdProtocolException(
            $"the client sent {_options.MaxOptionsPerHandshake} options without choosing an export (limit MaxOptionsPerHandshake)");
    }

    /// <summary>Sends the newstyle greeting and takes the client's flags.</summary>
    private async Task GreetAsync(CancellationToken ct)
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, InitPasswd);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), FlagFixedNewstyle | FlagNoZeroes);
        await SendRawAsync(hello, ct).ConfigureAwait(false);

        var clientFlagsBytes = new byte[4];
        await _reader.ReadExactlyAsync(clientFlagsBytes, ct).ConfigureAwait(false);
        var clientFlags = BinaryPrimitives.ReadUInt32BigEndian(clientFlagsBytes);
        if ((clientFlags & ~KnownClientFlags) != 0)
        {
            // The protocol says the server MUST drop the connection on unknown client flags.
            throw new NbdProtocolException(
                $"client flags 0x{clientFlags:x8} include unknown bits; known: FIXED_NEWSTYLE (0x1), NO_ZEROES (0x2)");
        }
        _noZeroes = (clientFlags & ClientFlagNoZeroes) != 0;
    }

    /// <summary>
    /// Reads the next option and its data. An option this server refuses before looking at it (data over the limit,
    /// anything but STARTTLS while TLS is required) is answered here and comes back with null data; one whose refusal
    /// has no reply in the protocol (EXPORT_NAME) ends the connection.
    /// </summary>
    private async Task<(uint Option, byte[]? Data)> ReadOptionAsync(byte[] header, CancellationToken ct)
    {
        await _reader.ReadExactlyAsync(header, ct).ConfigureAwait(false);
        var magic = BinaryPrimitives.ReadUInt64BigEndian(header);
        var option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        if (magic != IHaveOpt)
        {
            throw new NbdProtocolException($"option magic 0x{magic:x16} is not IHAVEOPT (0x{IHaveOpt:x16})");
        }
        if (length > _options.MaxOptionLengthBytes)
        {
            var tooLong = $"{OptionName(option)} carries {length} bytes; the limit is {_options.MaxOptionLengthBytes}";
            if (option == OptExportName || length > MaxDiscardablePayloadBytes)
            {
                throw new NbdProtocolException(tooLong);
            }
            await _reader.SkipAsync(length, ct).ConfigureAwait(false);
            await SendOptionReplyAsync(option, RepErrTooBig, tooLong, ct).ConfigureAwait(false);
            return (option, null);
        }
        var data = new byte[length];
        await _reader.ReadExactlyAsync(data, ct).ConfigureAwait(false);
        Log.Option(_logger, Id, OptionName(option), length);

        if (_options.Tls == NbdTlsMode.Require && _stream is null && option is not (OptStartTls or OptAbort))
        {
            if (option == OptExportName)
            {
                // EXPORT_NAME has no error reply: the protocol says to close the connection.
                throw new NbdProtocolException("NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS; this server requires TLS");
            }
            await SendOptionReplyAsync(
                option,
                RepErrTlsReqd,
                $"{OptionName(option)} before NBD_OPT_STARTTLS; this server requires TLS",
                ct).ConfigureAwait(false);
            return (option, null);
        }
        return (option, data);
    }

    /// <summary>
    /// Acts on one option: null while haggling goes on, true once the client entered the transmission phase (GO or
    /// EXPORT_NAME), false when it ended the handshake with ABORT.
    /// </summary>
    private async Task<bool?> HandleOptionAsync(uint option, byte[] data, CancellationToken ct)
    {
        switch (option)
        {
            case OptStartTls when _tls is not null:
                await StartTlsAsync(data, ct).ConfigureAwait(false);
                return null;
            case OptExportName:
                return await ExportNameAsync(data, ct).ConfigureAwait(false);
            case OptAbort:
                // The client may already have gone; the ACK is a courtesy.
                try
                {
                    await SendOptionReplyAsync(option, RepAck, (byte[]?)null, ct).ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException or IOException)
                {
                }
                Log.ClientAborted(_logger, Id, Remote);
                return false;
            case OptList:
                await ListAsync(data, ct).ConfigureAwait(false);
                return null;
            case OptStructuredReply when data.Length != 0:
                await SendOptionReplyAsync(
                    option,
                    RepErrInvalid,
                    $"NBD_OPT_STRUCTURED_REPLY takes no data; got {data.Length} bytes",
                    ct).ConfigureAwait(false);
                return null;
            case OptStructuredReply:
                _structuredReplies = true;
                await SendOptionReplyAsync(option, RepAck, (byte[]?)null, ct).ConfigureAwait(false);
                return null;
            case OptInfo:
            case OptGo:
                return await InfoOrGoAsync(option, data, ct).ConfigureAwait(false) ? true : null;
            default:
                await SendOptionReplyAsync(
                    option,
                    RepErrUnsup,
                    $"{OptionName(option)} is not supported by this server",
                    ct).ConfigureAwait(false);
                return null;
        }
    }

    /// <summary>
    /// NBD_OPT_STARTTLS: ACK in plain text, then the TLS handshake over the same socket; option haggling starts again
    /// inside TLS, and what was negotiated before it is forgotten, as the protocol's TLS section says.
    /// </summary>
    private async Task StartTlsAsync(byte[] data, CancellationToken ct)
    {
        if (_stream is not null)
        {
            await SendOptionReplyAsync(
                OptStartTls, RepErrInvalid, "TLS is already running on this connection", ct).ConfigureAwait(false);
            return;
        }
        if (data.Length != 0)
        {
            await SendOptionReplyAsync(
                OptStartTls,
                RepErrInvalid,
                $"NBD_OPT_STARTTLS takes no data; got {data.Length} bytes",
                ct).ConfigureAwait(false);
            return;
        }
        await SendOptionReplyAsync(OptStartTls, RepAck, (byte[]?)null, ct).ConfigureAwait(false);
        if (_reader.BufferedBytes != 0)
        {
            // Bytes sent after STARTTLS but before the reply are not TLS and must not be read as if they were.
            throw new NbdProtocolException(
                $"the client sent {_reader.BufferedBytes} bytes after NBD_OPT_STARTTLS before the server's reply");
        }
        var session = await _tls!.AcceptAsync(_socket, ct).ConfigureAwait(false);
        (_stream, _identity) = (session.Stream, session.Identity);
        _reader.UseStream(_stream);
        _structuredReplies = false;
        Log.TlsStarted(_logger, Id, Remote, _tls.Kind, session.CipherSuite, _identity ?? "(none)");
    }

    private async Task ListAsync(byte[] data, CancellationToken ct)
    {
        if (data.Length != 0)
        {
            await SendOptionReplyAsync(
                OptList,
                RepErrInvalid,
                $"NBD_OPT_LIST takes no data; got {data.Length} bytes",
                ct).ConfigureAwait(false);
            return;
        }
        var names = await _resolver.ListAsync(_identity, ct).ConfigureAwait(false);
        foreach (var name in names)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            if (nameBytes.Length > MaxStringBytes)
            {
                continue;
            }
            var payload = new byte[4 + nameBytes.Length];
            BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)nameBytes.Length);
            nameBytes.CopyTo(payload, 4);
            await SendOptionReplyAsync(OptList, RepServer, payload, ct).ConfigureAwait(false);
        }
        await SendOptionReplyAsync(OptList, RepAck, (byte[]?)null, ct).ConfigureAwait(false);
    }

    private async Task<bool> ExportNameAsync(byte[] data, CancellationToken ct)
    {
        // NBD_OPT_EXPORT_NAME cannot be answered with an error: the protocol says to end the session instead.
        if (!TryDecodeName(data, out var name, out var nameError))
        {
            throw new NbdProtocolException($"NBD_OPT_EXPORT_NAME: {nameError}");
        }
        var (export, error) = await OpenExportAsync(name, ct).ConfigureAwait(false);
        if (export is null)
        {
            throw new NbdProtocolException($"NBD_OPT_EXPORT_NAME: {error}");
        }
        _export = export;
        _transmissionFlags = TransmissionFlags(export);
        var reply = new byte[_noZeroes ? 10 : 134];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.SizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), _transmissionFlags);
        await SendRawAsync(reply, ct).ConfigureAwait(false);
        Log.Exporting(_logger, Id, Remote, export.Name, export.SizeBytes, _structuredReplies);
        return true;
    }

    private async Task<bool> InfoOrGoAsync(uint option, byte[] data, CancellationToken ct)
    {
        if (!TryParseInfoRequest(option, data, out var name, out var wants, out var parseError))
        {
            await SendOptionReplyAsync(option, RepErrInvalid, parseError, ct).ConfigureAwait(false);
            return false;
        }
        var (export, error) = await OpenExportAsync(name, ct).ConfigureAwait(false);
        if (export is null)
        {
            await SendOptionReplyAsync(option, RepErrUnknown, error, ct).ConfigureAwait(false);
            return false;
        }
        var go = option == OptGo;
        try
        {
            var flags = TransmissionFlags(export);
            await SendInfoAsync(option, export, flags, wants.Name || name.Length == 0, wants.Description, ct)
                .ConfigureAwait(false);
            await SendOptionReplyAsync(option, RepAck, (byte[]?)null, ct).ConfigureAwait(false);
            if (go)
            {
                _export = export;
                _transmissionFlags = flags;
                Log.Exporting(_logger, Id, Remote, export.Name, export.SizeBytes, _structuredReplies);
                return true;
            }
            return false;
        }
        finally
        {
            if (!go || _export is null)
            {
                await _resolver.ReleaseAsync(export.Volume).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Parses NBD_OPT_INFO or NBD_OPT_GO data: name length (32), name, number of information requests (16), requests
    /// (16 each). On failure <paramref name="error"/> says what was wrong, for the client.
    /// </summary>
    private static bool TryParseInfoRequest(
        uint option,
        byte[] data,
        out string name,
        out (bool Name, bool Description) wants,
        out string error)
    {
        name = "";
        wants = default;
        if (data.Length < 6)
        {
            error = $"{OptionName(option)} data is {data.Length} bytes; at least 6 are needed";
            return false;
        }
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 6)
        {
            error = $"{OptionName(option)} name length {nameLength} does not fit in {data.Length} bytes of data";
            return false;
        }
        int requestCount = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength));
        if (data.Length != 4 + nameLength + 2 + (2 * requestCount))
        {
            error = $"{OptionName(option)} lists {requestCount} information requests but carries {data.Length} bytes";
            return false;
        }
        if (!TryDecodeName(data.AsSpan(4, (int)nameLength), out name, out error))
        {
            return false;
        }
        for (var i = 0; i < requestCount; i++)
        {
            var info = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength + 2 + (2 * i)));
            wants.Name |= info == InfoName;
            wants.Description |= info == InfoDescription;
        }
        return true;
    }

    /// <summary>
    /// The information replies of NBD_OPT_INFO and NBD_OPT_GO: the export's size and flags, its block sizes, and its
    /// name or description where wanted.
    /// </summary>
    private async Task SendInfoAsync(
        uint option,
        NbdExport export,
        ushort flags,
        bool sendName,
        bool sendDescription,
        CancellationToken ct)
    {
        var exportInfo = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(exportInfo, InfoExport);
        BinaryPrimitives.WriteUInt64BigEndian(exportInfo.AsSpan(2), (ulong)export.SizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(exportInfo.AsSpan(10), flags);
        await SendOptionReplyAsync(option, RepInfo, exportInfo, ct).ConfigureAwait(false);

        // Sent even when not asked for: the protocol allows it, and a client that did not ask must still
        // behave within the defaults, which our EINVAL replies cover.
        var blockSize = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(blockSize, InfoBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(2), (uint)export.MinimumBlockBytes);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(6), (uint)export.PreferredBlockBytes);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(10), (uint)export.MaxPayloadBytes);
        await SendOptionReplyAsync(option, RepInfo, blockSize, ct).ConfigureAwait(false);

        if (sendName)
        {
            await SendOptionReplyAsync(option, RepInfo, InfoString(InfoName, export.Name), ct).ConfigureAwait(false);
        }
        if (sendDescription)
        {
            await SendOptionReplyAsync(
                option,
                RepInfo,
                InfoString(InfoDescription, $"Cloud volume '{export.Name}', {export.SizeBytes} bytes"),
                ct).ConfigureAwait(false);
        }
    }

    private static byte[] InfoString(ushort type, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        var length = Math.Min(bytes.Length, MaxStringBytes);
        var payload = new byte[2 + length];
        BinaryPrimitives.WriteUInt16BigEndian(payload, type);
        bytes.AsSpan(0, length).CopyTo(payload.AsSpan(2));
        return payload;
    }

    private ushort TransmissionFlags(NbdExport export)
    {
        ushort flags = TxHasFlags | TxSendFlush | TxSendFua | TxSendTrim | TxSendWriteZeroes;
        if (export.ReadOnly)
        {
            flags |= TxReadOnly;
        }
        if (_structuredReplies)
        {
            // Every read is answered with one data chunk, so "don't fragment" always holds.
            flags |= TxSendDf;
        }
        if (_options.AdvertiseMultiConnection)
        {
            flags |= TxCanMultiConn;
        }
        return flags;
    }

    private static bool TryDecodeName(ReadOnlySpan<byte> bytes, out string name, out string error)
    {
        name = "";
        if (bytes.Length > MaxStringBytes)
        {
            error = $"export name is {bytes.Length} bytes; the protocol allows at most {MaxStringBytes}";
            return false;
        }
        if (bytes.IndexOf((byte)0) >= 0)
        {
            error = "export name contains a NUL byte, which the protocol forbids";
            return false;
        }
        try
        {
            name = StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            error = "export name is not valid UTF-8";
            return false;
        }
        error = "";
        return true;
    }

    private async Task<(NbdExport? Export, string Error)> OpenExportAsync(string name, CancellationToken ct)
    {
        var resolved = name;
        if (name.Length == 0)
        {
            var names = await _resolver.ListAsync(_identity, ct).ConfigureAwait(false);
            if (names.Count != 1)
            {
                return (null, names.Count == 0
                    ? "the empty export name means the only volume, but no volumes exist"
                    : $"the empty export name means the only volume, but there are {names.Count}; name one of: {string.Join(", ", names.Take(16))}");
            }
            resolved = names[0];
        }
        var volume = await _resolver.OpenAsync(resolved, ct).ConfigureAwait(false);
        var unknown = $"no volume named '{resolved}' for this client; NBD_OPT_LIST shows the volumes it may open";
        if (volume is null)
        {
            return (null, unknown);
        }
        NbdAccess access;
        try
        {
            access = await _resolver.GetAccessAsync(resolved, _identity, ct).ConfigureAwait(false);
        }
        catch
        {
            await _resolver.ReleaseAsync(volume).ConfigureAwait(false);
            throw;
        }
        if (access == NbdAccess.None)
        {
            // The same answer as for a name that does not exist: a client learns nothing of volumes it may not use.
            await _resolver.ReleaseAsync(volume).ConfigureAwait(false);
            Log.AccessDenied(_logger, Id, resolved, _identity ?? "(anonymous)");
            return (null, unknown);
        }
        var export = NbdExport.TryCreate(volume, _options.MaxPayloadBytes, out var error);
        if (export is null)
        {
            await _resolver.ReleaseAsync(volume).ConfigureAwait(false);
            return (null, error!);
        }
        return (access == NbdAccess.ReadOnly ? export.AsReadOnly() : export, "");
    }

    private ValueTask SendOptionReplyAsync(uint option, uint replyType, string? message, CancellationToken ct)
        => SendOptionReplyAsync(option, replyType, message is null ? null : Encoding.UTF8.GetBytes(message), ct);

    private async ValueTask SendOptionReplyAsync(uint option, uint replyType, byte[]? payload, CancellationToken ct)
    {
        var length = payload?.Length ?? 0;
        if (length > MaxStringBytes + 16 && (replyType & 0x80000000) != 0)
        {
            length = MaxStringBytes;
        }
        var reply = new byte[20 + length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), replyType);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)length);
        payload?.AsSpan(0, length).CopyTo(reply.AsSpan(20));
        if ((replyType & 0x80000000) != 0)
        {
            Log.OptionRefused(
                _logger,
                Id,
                OptionName(option),
                replyType & 0x7fffffff,
                payload is null ? "" : Encoding.UTF8.GetString(payload, 0, length));
        }
        await SendRawAsync(reply, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends a handshake message. The handshake is one sequence of awaited sends on one task, so it needs no lock;
    /// the transmission phase sends only through the reply queue.
    /// </summary>
    private async ValueTask SendRawAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (_stream is not null)
        {
            await _stream.WriteAsync(data, ct).ConfigureAwait(false);
            await _stream.FlushAsync(ct).ConfigureAwait(false);
            return;
        }
        while (!data.IsEmpty)
        {
            var n = await _socket.SendAsync(data, SocketFlags.None, ct).ConfigureAwait(false);
            data = data[n..];
        }
    }
}

/// <summary>
/// The client broke a MUST of the protocol in a way that leaves no choice but to close the connection.
/// </summary>
internal sealed class NbdProtocolException(string message) : Exception(message);
