using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using Cloud.Storage.Volumes;
using Microsoft.Extensions.Logging;
using static Cloud.Nbd.NbdProtocol;

namespace Cloud.Nbd;

internal sealed partial class NbdConnection
{
    /// <summary>
    /// The buffers requests and replies are built in: from 4 KiB up, pinned and with the payload at
    /// <see cref="DataOffset"/> (at least <see cref="ReplyHeaderReserveBytes"/>, room for a reply header) on a
    /// cache-line boundary, where the kernel copies into and out of them fastest (see <see cref="AlignedArrays"/>);
    /// smaller ones from <see cref="ArrayPool{T}.Shared"/>, the payload at <see cref="ReplyHeaderReserveBytes"/>.
    /// </summary>
    private static readonly AlignedArrayPool IoBuffers = new(ReplyHeaderReserveBytes);

    /// <summary>Where the payload starts in a buffer from <see cref="IoBuffers"/>.</summary>
    private static int DataOffset(byte[] buffer) => IoBuffers.Offset(buffer);

    /// <summary>
    /// One parsed request and the pooled buffer that carries its payload (write) or its reply (read).
    /// </summary>
    private readonly struct Request(
        ushort flags,
        ushort type,
        ulong cookie,
        ulong offset,
        uint length,
        byte[]? buffer,
        long budgetBytes,
        uint presetError,
        byte[]? owned = null)
    {
        public ushort Flags { get; } = flags;
        public ushort Type { get; } = type;
        public ulong Cookie { get; } = cookie;
        public ulong Offset { get; } = offset;
        public uint Length { get; } = length;

        /// <summary>
        /// Rented; payload at <see cref="DataOffset"/>, so a read reply's header fits in front of it.
        /// </summary>
        public byte[]? Buffer { get; } = buffer;

        public long BudgetBytes { get; } = budgetBytes;

        /// <summary>An error found while parsing (e.g. an oversized write whose payload was skipped), or 0.</summary>
        public uint PresetError { get; } = presetError;

        /// <summary>
        /// A write's payload in an array of exactly its length from <see cref="PayloadPool"/>, handed to an
        /// <see cref="IBufferOwningVolume"/> (which keeps it, sparing a copy, and recycles it once committed); else
        /// null.
        /// </summary>
        public byte[]? Owned { get; } = owned;
    }

    private async Task TransmitAsync()
    {
        var header = new byte[RequestHeaderBytes];
        try
        {
            while (true)
            {
                try
                {
                    await _reader.ReadExactlyAsync(header, _stopReading).ConfigureAwait(false);
                }
                catch (NbdDisconnectedException e)
                {
                    // Between requests, a closed socket is the client's hard disconnect: finish what is in flight.
                    Log.ClientDisconnected(_logger, Id, Remote, e.Message);
                    break;
                }
                var magic = BinaryPrimitives.ReadUInt32BigEndian(header);
                if (magic != RequestMagic)
                {
                    // Without the magic there is no way to find the next request boundary.
                    throw new NbdProtocolException(
                        $"request magic 0x{magic:x8} is not NBD_REQUEST_MAGIC (0x{RequestMagic:x8})");
                }
                var type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
                if (type == CmdDisc)
                {
                    Log.ClientDisconnecting(_logger, Id, Remote);
                    break;
                }
                var request = await ReceiveAsync(
                    BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)),
                    type,
                    BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)),
                    BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16)),
                    BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24))).ConfigureAwait(false);
                // On the thread pool, not on this loop: a volume may do part of its work (parity, checksums, a
                // small file I/O) before its first await, and the loop must go on reading the next request.
                ThreadPool.UnsafeQueueUserWorkItem(
                    static state => _ = state.Connection.ProcessAsync(state.Request),
                    (Connection: this, Request: request),
                    preferLocal: false);
            }
        }
        finally
        {
            await DrainAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Takes the request's share of the in-flight budget and reads what follows its header: a write's payload, into
    /// the array the request will carry (an oversized one skipped and the request refused). A read gets the buffer its
    /// reply will be built in.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Request> ReceiveAsync(ushort flags, ushort type, ulong cookie, ulong offset, uint length)
    {
        var export = _export!;
        if (type == CmdWrite
            && length > 0
            && length <= export.VolumeIoPieceBytes
            && export.Volume is IBufferOwningVolume
            && (flags & ~CmdFlagFua) == 0)
        {
            // One piece for a volume that keeps the array: read the payload straight into an array of its own (from
            // the payload pool, of exactly this length; every byte is overwritten by the payload) and give it away,
            // instead of reading into a pooled buffer that the volume would have to copy.
            await AcquireAsync(length).ConfigureAwait(false);
            var owned = PayloadPool.Shared.Rent((int)length);
            await ReadPayloadAsync(owned, owned, static b => PayloadPool.Shared.Return(b), length)
                .ConfigureAwait(false);
            return new Request(flags, type, cookie, offset, length, null, length, 0, owned);
        }
        if (type == CmdWrite && length > export.MaxPayloadBytes)
        {
            if (length > MaxDiscardablePayloadBytes)
            {
                throw new NbdProtocolException(
                    $"NBD_CMD_WRITE of {length} bytes exceeds the {MaxDiscardablePayloadBytes}-byte limit beyond which payloads are not read");
            }
            await _reader.SkipAsync(length, _stopReading).ConfigureAwait(false);
            await AcquireAsync(0).ConfigureAwait(false);
            return new Request(flags, type, cookie, offset, length, null, 0, EInval);
        }
        if (type == CmdWrite)
        {
            await AcquireAsync(length).ConfigureAwait(false);
            var buffer = IoBuffers.Rent(ReplyHeaderReserveBytes + (int)length);
            await ReadPayloadAsync(
                buffer,
                buffer.AsMemory(DataOffset(buffer), (int)length),
                static b => IoBuffers.Return(b),
                length).ConfigureAwait(false);
            return new Request(flags, type, cookie, offset, length, buffer, length, 0);
        }
        // Nothing follows the header. A read within the limit holds its length of the budget until its reply is sent.
        long budget = type == CmdRead && length <= export.MaxPayloadBytes ? length : 0;
        await AcquireAsync(budget).ConfigureAwait(false);
        var replyBuffer = budget > 0 ? IoBuffers.Rent(ReplyHeaderReserveBytes + (int)length) : null;
        return new Request(flags, type, cookie, offset, length, replyBuffer, budget, 0);
    }

    /// <summary>
    /// Reads a payload into <paramref name="destination"/> (part of <paramref name="array"/>); if that fails, gives the
    /// array back with <paramref name="giveBack"/> and the request's budget with it, since no request will carry them.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadPayloadAsync(
        byte[] array,
        Memory<byte> destination,
        Action<byte[]> giveBack,
        long budgetBytes)
    {
        try
        {
            await _reader.ReadExactlyAsync(destination, _stopReading).ConfigureAwait(false);
        }
        catch
        {
            giveBack(array);
            Complete(budgetBytes);
            throw;
        }
    }

    private async Task ProcessAsync(Request request)
    {
        var export = _export!;
        var ct = _abort.Token;
        var error = request.PresetError;
        var message = error == 0
            ? null
            : $"{CommandName(request.Type)} of {request.Length} bytes exceeds the maximum payload of {export.MaxPayloadBytes} bytes";
        var replied = false;
        var ownedTaken = false;
        try
        {
            if (error == 0)
            {
                (error, message) = Validate(export, request);
            }
            if (error == 0)
            {
                // From here the volume owns a write's array, whatever the outcome: only it may recycle it.
                ownedTaken = request is { Type: CmdWrite, Owned: not null };
                replied = await RunCommandAsync(export, request, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            (error, message) = Failure(e, request, ct);
        }

        // A read's reply carries the request's buffer; the sender returns it and completes the request.
        if (!replied) ReplyWithStatus(request, error, message, ownedTaken);
    }

    /// <summary>Runs a valid request against the volume; true when its reply is already queued (a read's).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> RunCommandAsync(NbdExport export, Request request, CancellationToken ct)
    {
        var offset = (long)request.Offset;
        var fua = (request.Flags & CmdFlagFua) != 0;
        switch (request.Type)
        {
            case CmdRead:
                await ReadPiecesAsync(export, request, ct).ConfigureAwait(false);
                QueueReadReply(request);
                return true;
            case CmdWrite when request.Owned is { } owned:
                await ((IBufferOwningVolume)export.Volume).WriteOwnedAsync(offset, owned, fua, ct).ConfigureAwait(false);
                break;
            case CmdWrite:
                await WritePiecesAsync(export, request, fua, ct).ConfigureAwait(false);
                break;
            case CmdFlush:
                await export.Volume.FlushAsync(ct).ConfigureAwait(false);
                break;
            case CmdTrim:
                await TrimAsync(export, offset, request.Length, fua, ct).ConfigureAwait(false);
                break;
            case CmdWriteZeroes:
                await WriteZeroesAsync(export, offset, request.Length, fua, (request.Flags & CmdFlagNoHole) != 0, ct)
                    .ConfigureAwait(false);
                break;
            case CmdCache:
                // A hint; the volume has no cache to warm.
                break;
        }
        return false;
    }

    /// <summary>
    /// The error a failed request is answered with: shutdown when the server is stopping, EINVAL for a bad argument,
    /// EIO otherwise (logged; the message of an unexpected exception is not sent to the client).
    /// </summary>
    private (uint Error, string Message) Failure(Exception e, Request request, CancellationToken ct)
    {
        switch (e)
        {
            case OperationCanceledException when ct.IsCancellationRequested:
                return (EShutdown, "the server is shutting down");
            case ArgumentException:
                return (EInval, e.Message);
        }
        Log.RequestFailed(_logger, e, Id, CommandName(request.Type), request.Offset, request.Length);
        return (EIo, e is IOException or InvalidOperationException ? e.Message : "internal server error");
    }

    /// <summary>
    /// Answers a request that has no data to send back (every command but a successful read), after giving back the
    /// buffers the request still holds.
    /// </summary>
    private void ReplyWithStatus(in Request request, uint error, string? message, bool ownedTaken)
    {
        if (error != 0)
        {
            Log.RequestRefused(
                _logger, Id, CommandName(request.Type), request.Offset, request.Length, error, message ?? "");
        }
        if (request.Owned is not null && error != 0 && !ownedTaken)
        {
            // Refused before the volume took the array: still ours to recycle.
            PayloadPool.Shared.Return(request.Owned);
        }
        if (request.Buffer is not null)
        {
            // A write's payload (already written, or refused): the status reply does not need it.
            IoBuffers.Return(request.Buffer);
        }
        QueueStatusReply(request, error, message);
    }

    /// <summary>Reads the request's range into its buffer, behind the reply header's room, a piece at a time.</summary>
    private static async ValueTask ReadPiecesAsync(NbdExport export, Request request, CancellationToken ct)
    {
        var offset = (long)request.Offset;
        var length = (int)Math.Min(request.Length, int.MaxValue);
        for (int done = 0, piece; done < length; done += piece)
        {
            piece = export.PieceBytes(offset + done, length - done);
            await export.Volume.ReadAsync(
                offset + done, request.Buffer.AsMemory(DataOffset(request.Buffer!) + done, piece), ct)
                .ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes the payload in the request's buffer, a piece at a time (for a volume that does not take arrays over).
    /// </summary>
    private static async ValueTask WritePiecesAsync(
        NbdExport export,
        Request request,
        bool fua,
        CancellationToken ct)
    {
        var offset = (long)request.Offset;
        var length = (int)Math.Min(request.Length, int.MaxValue);
        for (int done = 0, piece; done < length; done += piece)
        {
            piece = export.PieceBytes(offset + done, length - done);
            await export.Volume.WriteAsync(
                offset + done, request.Buffer.AsMemory(DataOffset(request.Buffer!) + done, piece), fua, ct)
                .ConfigureAwait(false);
        }
    }

    /// <summary>
    /// WRITE_ZEROES: with NO_HOLE the range must stay allocated, so real zeroes are written; otherwise it is trimmed,
    /// since the volume contract says trimmed blocks read back as zeroes.
    /// </summary>
    private static async ValueTask WriteZeroesAsync(
        NbdExport export,
        long offset,
        uint length,
        bool fua,
        bool noHole,
        CancellationToken ct)
    {
        if (!noHole)
        {
            await TrimAsync(export, offset, length, fua, ct).ConfigureAwait(false);
            return;
        }
        var pieceBytes = Math.Min(export.VolumeIoPieceBytes, Zeroes.Length);
        for (long done = 0, piece; done < length; done += piece)
        {
            piece = Math.Min(pieceBytes, export.PieceBytes(offset + done, length - done));
            await export.Volume.WriteAsync(offset + done, Zeroes.AsMemory(0, (int)piece), fua, ct)
                .ConfigureAwait(false);
        }
    }

    /// <summary>Trims the range a piece at a time, then flushes for FUA.</summary>
    private static async ValueTask TrimAsync(NbdExport export, long offset, uint length, bool fua, CancellationToken ct)
    {
        for (long done = 0, piece; done < length; done += piece)
        {
            piece = export.PieceBytes(offset + done, length - done);
            await export.Volume.TrimAsync(offset + done, piece, ct).ConfigureAwait(false);
        }
        if (fua)
        {
            await export.Volume.FlushAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Checks flags, alignment and range; the error values follow the protocol's "Error values" section.
    /// </summary>
    private (uint Error, string? Message) Validate(NbdExport export, in Request r)
    {
        ushort allowed = r.Type switch
        {
            CmdRead => (ushort)(CmdFlagFua | (_structuredReplies ? CmdFlagDf : 0)),
            CmdWrite or CmdFlush or CmdTrim or CmdCache => CmdFlagFua,
            CmdWriteZeroes => CmdFlagFua | CmdFlagNoHole,
            _ => 0,
        };
        var command = CommandName(r.Type);
        if (r.Type is not (CmdRead or CmdWrite or CmdFlush or CmdTrim or CmdCache or CmdWriteZeroes))
        {
            return (EInval, $"{command} is not supported; supported: READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES");
        }
        if ((r.Flags & ~allowed) != 0)
        {
            return (EInval, $"command flags 0x{r.Flags:x4} are not allowed on {command}; allowed: 0x{allowed:x4}");
        }
        if (r.Type == CmdFlush)
        {
            return r.Offset != 0 || r.Length != 0
                ? (EInval, $"NBD_CMD_FLUSH must have offset and length 0; got offset {r.Offset}, length {r.Length}")
                : (0, null);
        }
        if (r.Type == CmdRead && r.Length > export.MaxPayloadBytes)
        {
            return (_structuredReplies ? EOverflow : EInval, $"NBD_CMD_READ of {r.Length} bytes exceeds the maximum payload of {export.MaxPayloadBytes} bytes");
        }
        if (export.ReadOnly && r.Type is CmdWrite or CmdTrim or CmdWriteZeroes)
        {
            return (EPerm, $"{command} on export '{export.Name}', which this client may only read");
        }
        var size = (ulong)export.SizeBytes;
        if (r.Offset > size || r.Length > size - r.Offset)
        {
            var outOfRange = r.Type is CmdWrite or CmdWriteZeroes ? ENoSpc : EInval;
            return (outOfRange, $"{command} at offset {r.Offset} length {r.Length} runs past the end of the {size}-byte export");
        }
        var block = (ulong)export.MinimumBlockBytes;
        if (r.Offset % block != 0 || r.Length % block != 0)
        {
            return (EInval, $"{command} at offset {r.Offset} length {r.Length} is not aligned to the {block}-byte minimum block size");
        }
        return (0, null);
    }

    /// <summary>Queues a read's data reply, built in front of the data in the request's buffer (no copy).</summary>
    private void QueueReadReply(in Request r)
    {
        var buffer = r.Buffer!;
        var length = (int)r.Length;
        if (_structuredReplies)
        {
            if (length == 0)
            {
                IoBuffers.Return(buffer);
                QueueStatusReply(r, 0, null);
                return;
            }
            // One NBD_REPLY_TYPE_OFFSET_DATA chunk, final: the data is all in memory, no error can follow.
            var start = DataOffset(buffer) - StructuredReplyHeaderBytes - 8;
            var span = buffer.AsSpan(start);
            BinaryPrimitives.WriteUInt32BigEndian(span, StructuredReplyMagic);
            BinaryPrimitives.WriteUInt16BigEndian(span[4..], ReplyFlagDone);
            BinaryPrimitives.WriteUInt16BigEndian(span[6..], ReplyTypeOffsetData);
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], r.Cookie);
            BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)(8 + length));
            BinaryPrimitives.WriteUInt64BigEndian(span[20..], r.Offset);
            QueueReply(
                new OutgoingReply(
                    new ArraySegment<byte>(buffer, start, StructuredReplyHeaderBytes + 8 + length),
                    buffer,
                    r.BudgetBytes,
                    r.Type));
        }
        else
        {
            var start = DataOffset(buffer) - SimpleReplyHeaderBytes;
            var span = buffer.AsSpan(start);
            BinaryPrimitives.WriteUInt32BigEndian(span, SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(span[4..], 0);
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], r.Cookie);
            QueueReply(
                new OutgoingReply(
                    new ArraySegment<byte>(buffer, start, SimpleReplyHeaderBytes + length),
                    buffer,
                    r.BudgetBytes,
                    r.Type));
        }
    }

    /// <summary>
    /// Queues a reply without data: success, or an error (a structured error chunk with a message when negotiated).
    /// </summary>
    private void QueueStatusReply(in Request r, uint error, string? message)
    {
        if (!_structuredReplies || (error == 0 && r.Type != CmdRead))
        {
            // Simple replies are allowed for anything without a payload; READ needs a structured one when negotiated.
            var reply = IoBuffers.Rent(SimpleReplyHeaderBytes);
            BinaryPrimitives.WriteUInt32BigEndian(reply, SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(4), error);
            BinaryPrimitives.WriteUInt64BigEndian(reply.AsSpan(8), r.Cookie);
            QueueReply(
                new OutgoingReply(
                    new ArraySegment<byte>(reply, 0, SimpleReplyHeaderBytes),
                    reply,
                    r.BudgetBytes,
                    r.Type));
            return;
        }
        var messageBytes = error == 0 ? 0 : Math.Min(Encoding.UTF8.GetByteCount(message ?? ""), 1024);
        var payloadBytes = error == 0 ? 0 : 6 + messageBytes;
        var chunk = IoBuffers.Rent(StructuredReplyHeaderBytes + payloadBytes);
        var span = chunk.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(span, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], ReplyFlagDone);
        BinaryPrimitives.WriteUInt16BigEndian(span[6..], error == 0 ? ReplyTypeNone : ReplyTypeError);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], r.Cookie);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)payloadBytes);
        if (error != 0)
        {
            BinaryPrimitives.WriteUInt32BigEndian(span[20..], error);
            var text = Encoding.UTF8.GetBytes(message ?? "");
            BinaryPrimitives.WriteUInt16BigEndian(span[24..], (ushort)messageBytes);
            text.AsSpan(0, messageBytes).CopyTo(span[26..]);
        }
        QueueReply(
            new OutgoingReply(
                new ArraySegment<byte>(chunk, 0, StructuredReplyHeaderBytes + payloadBytes),
                chunk,
                r.BudgetBytes,
                r.Type));
    }

    // ------------------------------------------------------------------ the reply sender

    /// <summary>Replies sent in one system call at most (a gathered send).</summary>
    private const int MaxRepliesPerSend = 64;

    /// <summary>Bytes sent in one system call at most, unless a single reply is larger.</summary>
    private const int MaxBytesPerSend = 4 << 20;

    /// <summary>
    /// A reply waiting for the socket: its bytes, the pooled array that holds them, the request's budget.
    /// </summary>
    private readonly record struct OutgoingReply(
        ArraySegment<byte> Bytes,
        byte[] Pooled,
        long BudgetBytes,
        ushort Type);

    /// <summary>
    /// Queues a reply. The thread that finds nobody sending becomes the sender and sends everything queued, several
    /// replies per system call, until the queue is empty; other threads only queue. Replies therefore go out back to
    /// back, never interleaved, without a lock hand-over (and its thread wake-up) between one reply and the next.
    /// </summary>
    private void QueueReply(in OutgoingReply reply)
    {
        _outgoing.Enqueue(reply);
        if (Interlocked.CompareExchange(ref _sending, 1, 0) == 0)
        {
            _ = SendQueuedAsync();
        }
    }

    private async Task SendQueuedAsync()
    {
        var segments = new List<ArraySegment<byte>>(MaxRepliesPerSend);
        var sent = new List<OutgoingReply>(MaxRepliesPerSend);
        while (true)
        {
            long bytes = 0;
            while (sent.Count < MaxRepliesPerSend
                && (sent.Count == 0 || bytes < MaxBytesPerSend)
                && _outgoing.TryDequeue(out var next))
            {
                sent.Add(next);
                segments.Add(next.Bytes);
                bytes += next.Bytes.Count;
            }
            if (sent.Count == 0)
            {
                Volatile.Write(ref _sending, 0);
                // A reply queued after the last look but before the release found a sender still running: look again.
                if (_outgoing.IsEmpty || Interlocked.CompareExchange(ref _sending, 1, 0) != 0)
                {
                    return;
                }
                continue;
            }
            try
            {
                if (!_sendFailed)
                {
                    await SendAllAsync(segments).ConfigureAwait(false);
                }
            }
            catch (Exception e)
            {
                // The replies cannot be delivered: the socket is gone or the stream is no longer in a known state.
                _sendFailed = true;
                Log.ReplyFailed(_logger, Id, CommandName(sent[0].Type), e.Message);
                Abort();
            }
            finally
            {
                foreach (var r in sent)
                {
                    IoBuffers.Return(r.Pooled);
                    Complete(r.BudgetBytes);
                }
                sent.Clear();
                segments.Clear();
            }
        }
    }

    /// <summary>Sends every byte of <paramref name="segments"/>, continuing after a partial send.</summary>
    private async ValueTask SendAllAsync(List<ArraySegment<byte>> segments)
    {
        if (_stream is not null)
        {
            await SendAllToStreamAsync(_stream, segments).ConfigureAwait(false);
            return;
        }
        long done = await _socket.SendAsync(segments, SocketFlags.None).ConfigureAwait(false);
        foreach (var segment in segments)
        {
            if (done >= segment.Count)
            {
                done -= segment.Count;
                continue;
            }
            var rest = segment.AsMemory((int)done);
            done = 0;
            while (!rest.IsEmpty)
            {
                var n = await _socket.SendAsync(rest, SocketFlags.None, _abort.Token).ConfigureAwait(false);
                rest = rest[n..];
            }
        }
    }

    /// <summary>Small replies are gathered into one TLS write up to this size (one record and one system call).</summary>
    private const int MaxCoalescedBytes = 64 << 10;

    /// <summary>
    /// Sends <paramref name="segments"/> through TLS. Each stream write is at least one TLS record and one system call,
    /// so small replies (write acknowledgements, 4 KiB reads) are copied together first; large ones go as they are.
    /// </summary>
    private async ValueTask SendAllToStreamAsync(Stream stream, List<ArraySegment<byte>> segments)
    {
        byte[]? gathered = null;
        var gatheredBytes = 0;
        try
        {
            foreach (var segment in segments)
            {
                if (segment.Count >= MaxCoalescedBytes / 2)
                {
                    if (gatheredBytes > 0)
                    {
                        await stream.WriteAsync(gathered.AsMemory(0, gatheredBytes), _abort.Token).ConfigureAwait(false);
                        gatheredBytes = 0;
                    }
                    await stream.WriteAsync(segment.AsMemory(), _abort.Token).ConfigureAwait(false);
                    continue;
                }
                gathered ??= IoBuffers.Rent(MaxCoalescedBytes);
                if (gatheredBytes + segment.Count > gathered.Length)
                {
                    await stream.WriteAsync(gathered.AsMemory(0, gatheredBytes), _abort.Token).ConfigureAwait(false);
                    gatheredBytes = 0;
                }
                segment.AsSpan().CopyTo(gathered.AsSpan(gatheredBytes));
                gatheredBytes += segment.Count;
            }
            if (gatheredBytes > 0)
            {
                await stream.WriteAsync(gathered.AsMemory(0, gatheredBytes), _abort.Token).ConfigureAwait(false);
            }
            await stream.FlushAsync(_abort.Token).ConfigureAwait(false);
        }
        finally
        {
            if (gathered is not null)
            {
                IoBuffers.Return(gathered);
            }
        }
    }

    // ------------------------------------------------------------------ in-flight bounds

    private bool HasRoom(long bytes)
        => Volatile.Read(ref _inFlightRequests) < _options.MaxInFlightRequestsPerConnection
           && (Interlocked.Read(ref _inFlightBytes) + bytes <= _options.MaxInFlightBytesPerConnection
               || Volatile.Read(ref _inFlightRequests) == 0);

    /// <summary>
    /// Waits until one more request of <paramref name="bytes"/> fits; only the reader loop calls this.
    /// </summary>
    private ValueTask AcquireAsync(long bytes)
    {
        if (HasRoom(bytes))
        {
            Interlocked.Increment(ref _inFlightRequests);
            Interlocked.Add(ref _inFlightBytes, bytes);
            return ValueTask.CompletedTask;
        }
        return AcquireSlowAsync(bytes);
    }

    private async ValueTask AcquireSlowAsync(long bytes)
    {
        await WaitUntilAsync(() => HasRoom(bytes), _stopReading).ConfigureAwait(false);
        Interlocked.Increment(ref _inFlightRequests);
        Interlocked.Add(ref _inFlightBytes, bytes);
    }

    private void Complete(long bytes)
    {
        Interlocked.Add(ref _inFlightBytes, -bytes);
        Interlocked.Decrement(ref _inFlightRequests);
        if (Interlocked.Exchange(ref _readerWaiting, 0) == 1)
        {
            _progress.Release();
        }
    }

    private async Task WaitUntilAsync(Func<bool> condition, CancellationToken ct)
    {
        while (true)
        {
            // Announce the wait before checking, so a completion in between is not missed.
            Interlocked.Exchange(ref _readerWaiting, 1);
            if (condition())
            {
                Interlocked.Exchange(ref _readerWaiting, 0);
                _progress.Wait(0);
                return;
            }
            await _progress.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits for every in-flight request to reply (the protocol's rule for DISC and for server shutdown).
    /// </summary>
    private async Task DrainAsync()
    {
        try
        {
            await WaitUntilAsync(() => Volatile.Read(ref _inFlightRequests) == 0, _abort.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
