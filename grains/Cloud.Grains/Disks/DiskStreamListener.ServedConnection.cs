using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Cloud.Grains.Abstractions;
using static Cloud.Grains.Disks.DiskStreamProtocol;

namespace Cloud.Grains.Disks;

public sealed partial class DiskStreamListener
{
    /// <summary>One caller's connection: requests read and run on its thread, replies sent under a lock.</summary>
    private sealed class ServedConnection(DiskStreamListener owner, Socket socket, Stream stream)
    {
        /// <summary>The most durable writes one group commit answers.</summary>
        private const int MaxGroupWrites = 64;

        /// <summary>The longest a durable write waits for its group to close while requests keep coming.</summary>
        private static readonly TimeSpan MaxGroupDelay = TimeSpan.FromMilliseconds(1);

        /// <summary>Durable writes written and not yet flushed: answered together after one flush per member.</summary>
        private readonly List<(long Id, string Path)> _toCommit = [];

        private long _groupStarted;

        /// <summary>How many durable writes the last group answered.</summary>
        private int _lastGroup;

        /// <summary>How long a group about to close waits for one more request while groups are not single.</summary>
        private const int GroupWaitMicroseconds = 50;

        /// <summary>The most reply bytes batched on the connection's thread before they are sent.</summary>
        private const int MaxBatchBytes = 128 * 1024;

        /// <summary>The largest read reply copied into the batch; a larger one is sent by itself.</summary>
        private const int MaxBatchedPayloadBytes = 16 * 1024;

        /// <summary>Replies made on the connection's thread and not yet sent (<see cref="Batch"/>).</summary>
        private readonly byte[] _batch = new byte[MaxBatchBytes];

        private int _batched;
        private long _batchStarted;

        private readonly Lock _send = new();

        /// <summary>Guards the flushes queued for the flusher thread (a monitor: the flusher waits on it).</summary>
        private readonly object _flushGate = new();

        private List<(long Id, string Path)> _flushes = [];
        private Thread? _flusher;
        private bool _stopped;
        private readonly byte[] _replyHeader = new byte[ReplyHeaderBytes];
        private readonly string _host = owner.Host;

        /// <summary>One request as it arrived: a split request's second range starts at <c>SecondOffset</c>, and its
        /// first range holds <c>FirstLength</c> of the <c>Length</c> bytes (all of them when not split).</summary>
        private readonly record struct Frame(
            Op Op, long Id, string Path, long Offset, int Length, long SecondOffset, int FirstLength);

        private readonly byte[] _header = new byte[RequestHeaderBytes];
        private readonly byte[] _split = new byte[SplitBytes];
        private byte[] _pathBuffer = new byte[256];

        // A connection names a few members again and again: their paths are decoded once.
        private string _lastPath = "";
        private byte[] _lastPathBytes = [];

        public void Run(SiloAddress writer)
        {
            var reader = new FrameReader(stream);
            while (true)
            {
                Serve(reader, ReadFrame(reader), writer);
                AfterRequest(reader);
            }
        }

        /// <summary>Reads one request's header, path and (for a split request) second range; checks their bounds.</summary>
        private Frame ReadFrame(FrameReader reader)
        {
            reader.ReadExactly(_header);
            var op = (Op)_header[0];
            var pathLength = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(4));
            var id = BinaryPrimitives.ReadInt64LittleEndian(_header.AsSpan(8));
            var offset = BinaryPrimitives.ReadInt64LittleEndian(_header.AsSpan(16));
            var length = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(24));
            if (pathLength is < 1 or > MaxPathBytes)
                throw new InvalidDataException($"a request names a path of {pathLength} bytes; allowed 1-{MaxPathBytes}");
            if (length < 0 || length > DiskServer.MaxRequestBytes)
                throw new InvalidDataException(
                    $"a request moves {length} bytes; allowed 0-{DiskServer.MaxRequestBytes}");
            var path = ReadPath(reader, pathLength);
            if (op is not (Op.ReadSplit or Op.WriteSplit))
                return new Frame(op, id, path, offset, length, 0, length);
            reader.ReadExactly(_split);
            var secondOffset = BinaryPrimitives.ReadInt64LittleEndian(_split);
            var firstLength = BinaryPrimitives.ReadInt32LittleEndian(_split.AsSpan(8));
            if (firstLength < 1 || firstLength >= length)
                throw new InvalidDataException(
                    $"a split request of {length} bytes puts {firstLength} in its first range; allowed 1-{length - 1}");
            return new Frame(op, id, path, offset, length, secondOffset, firstLength);
        }

        private string ReadPath(FrameReader reader, int pathLength)
        {
            if (_pathBuffer.Length < pathLength) _pathBuffer = new byte[pathLength];
            reader.ReadExactly(_pathBuffer.AsSpan(0, pathLength));
            if (!_pathBuffer.AsSpan(0, pathLength).SequenceEqual(_lastPathBytes))
            {
                _lastPath = Encoding.UTF8.GetString(_pathBuffer, 0, pathLength);
                _lastPathBytes = _pathBuffer[..pathLength];
            }
            return _lastPath;
        }

        /// <summary>Runs one request on this thread (a write's payload read first), or hands its flush on.</summary>
        private void Serve(FrameReader reader, Frame f, SiloAddress writer)
        {
            switch (f.Op)
            {
                case Op.Read or Op.ReadSplit:
                    Read(f);
                    break;
                case Op.Write or Op.WriteDurable or Op.WriteSplit:
                    var data = ArrayPool<byte>.Shared.Rent(Math.Max(f.Length, 1));
                    try
                    {
                        reader.ReadExactly(data.AsSpan(0, f.Length));
                    }
                    catch
                    {
                        ArrayPool<byte>.Shared.Return(data);
                        throw;
                    }
                    Write(f, data, writer);
                    break;
                case Op.Flush:
                    // A member still opening is flushed once open, asynchronously; an open one by the flusher.
                    if (owner.Server.IsOpen(f.Path)) QueueFlush(f.Id, f.Path);
                    else Answer(f.Id, owner.Server.FlushAsync(f.Path), null);
                    break;
                default:
                    throw new InvalidDataException(
                        $"request op {(byte)f.Op} is not one of read, write, durable write, flush, split read, split write");
            }
        }

        /// <summary>
        /// Group commit: the durable writes read so far are flushed and answered once no further request is waiting,
        /// so that those that arrived together share an fdatasync per member, and the flush runs on this thread with
        /// no hop to the thread pool; and at the latest after a group's bound in writes or time, so that a caller that
        /// never pauses does not hold its durable writes back. A request already received into the reader's buffer
        /// counts as waiting. (With TLS, a request already decrypted may wait for the flush; it is answered right
        /// after.) The replies made on this thread leave together too, once no request waits (or within the bound).
        /// </summary>
        private void AfterRequest(FrameReader reader)
        {
            var waiting = reader.Buffered > 0 || socket.Available > 0;
            // While groups come in twos or more (a caller with many writes in flight), a group about to close
            // waits a moment for the next request: one that comes joins it, and its fdatasync is shared.
            if (!waiting && _toCommit.Count > 0 && _lastGroup >= 2
                && Stopwatch.GetElapsedTime(_groupStarted) < MaxGroupDelay)
                waiting = socket.Poll(GroupWaitMicroseconds, SelectMode.SelectRead) && socket.Available > 0;
            if (_toCommit.Count > 0
                && (!waiting || _toCommit.Count >= MaxGroupWrites
                    || Stopwatch.GetElapsedTime(_groupStarted) > MaxGroupDelay))
                Commit();
            if (_batched > 0 && (!waiting || Stopwatch.GetElapsedTime(_batchStarted) > MaxGroupDelay))
                SendBatch();
        }

        /// <summary>
        /// Hands a flush to the connection's flusher thread: it flushes while this thread goes on reading and writing,
        /// and the flushes that arrive meanwhile share its next <c>fdatasync</c> of each member, with no thread-pool
        /// work item (and no idle pool worker spinning after it) per flush.
        /// </summary>
        private void QueueFlush(long id, string path)
        {
            lock (_flushGate)
            {
                _flushes.Add((id, path));
                if (_flusher is null)
                {
                    _flusher = new Thread(FlushLoop) { IsBackground = true, Name = "cloud-disk-stream-flush" };
                    _flusher.Start();
                }
                else Monitor.Pulse(_flushGate);
            }
        }

        /// <summary>Ends the flusher once the connection has ended (what it holds is answered to a closed stream).</summary>
        public void Stop()
        {
            lock (_flushGate)
            {
                _stopped = true;
                Monitor.Pulse(_flushGate);
            }
        }

        private void FlushLoop()
        {
            List<(long Id, string Path)> batch = [];
            Dictionary<string, Exception?> flushed = new(StringComparer.Ordinal);
            try
            {
                while (TakeFlushes(ref batch))
                {
                    FlushEachOnce(batch, owner.Server.FlushRequestNow, flushed);
                    AnswerFlushes(batch, flushed);
                    batch.Clear();
                }
            }
            catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
            {
                // The caller is gone; it fails its own requests.
            }
        }

        /// <summary>Waits for queued flushes and swaps them into <paramref name="batch"/>; false once stopped and empty.</summary>
        private bool TakeFlushes(ref List<(long Id, string Path)> batch)
        {
            lock (_flushGate)
            {
                while (_flushes.Count == 0 && !_stopped) Monitor.Wait(_flushGate);
                if (_flushes.Count == 0) return false;
                (batch, _flushes) = (_flushes, batch);
                return true;
            }
        }

        /// <summary>
        /// Flushes each member named in <paramref name="requests"/> once, however many requests name it, and records in
        /// <paramref name="flushed"/> (cleared first) what each member's flush threw, or null.
        /// </summary>
        private static void FlushEachOnce(
            List<(long Id, string Path)> requests, Action<string> flush, Dictionary<string, Exception?> flushed)
        {
            flushed.Clear();
            foreach (var (_, path) in requests)
            {
                if (flushed.ContainsKey(path)) continue;
                try
                {
                    flush(path);
                    flushed[path] = null;
                }
                catch (Exception ex)
                {
                    flushed[path] = ex;
                }
            }
        }

        /// <summary>The flusher's answers: every successful flush in one write to the stream, then each failure.</summary>
        private void AnswerFlushes(List<(long Id, string Path)> batch, Dictionary<string, Exception?> flushed)
        {
            var ok = 0;
            foreach (var (_, path) in batch)
                if (flushed[path] is null) ok++;
            if (ok > 0)
            {
                var replies = ArrayPool<byte>.Shared.Rent(ok * ReplyHeaderBytes);
                try
                {
                    var at = 0;
                    foreach (var (id, path) in batch)
                    {
                        if (flushed[path] is not null) continue;
                        WriteReplyHeader(replies.AsSpan(at), id, Status.Ok, 0);
                        at += ReplyHeaderBytes;
                    }
                    lock (_send) stream.Write(replies, 0, at);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(replies);
                }
            }
            foreach (var (id, path) in batch)
                if (flushed[path] is { } error) Fail(id, error);
        }

        private readonly Dictionary<string, Exception?> _committed = new(StringComparer.Ordinal);

        // Made once: a group commit runs for every few durable writes.
        private readonly Action<string> _flushNow = owner.Server.FlushNow;

        private void Commit()
        {
            FlushEachOnce(_toCommit, _flushNow, _committed);
            // The answers join the batch of replies, sent in one go.
            foreach (var (id, path) in _toCommit)
                if (_committed[path] is null) Batch(id, Status.Ok, default);
            foreach (var (id, path) in _toCommit)
                if (_committed[path] is { } error) Fail(id, error);
            _lastGroup = _toCommit.Count;
            _toCommit.Clear();
        }

        /// <summary>A read, or with its first range short of its length a split read.</summary>
        private void Read(Frame f)
        {
            var (id, path, offset, length, secondOffset, firstLength) =
                (f.Id, f.Path, f.Offset, f.Length, f.SecondOffset, f.FirstLength);
            var data = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
            ValueTask read;
            try
            {
                read = firstLength == length
                    ? owner.Server.ReadIntoAsync(path, offset, data.AsMemory(0, length))
                    : owner.Server.ReadSplitIntoAsync(
                        path, offset, data.AsMemory(0, firstLength), secondOffset, data.AsMemory(firstLength, length - firstLength));
            }
            catch (Exception ex)
            {
                read = ValueTask.FromException(ex);
            }
            if (read.IsCompletedSuccessfully)
            {
                try
                {
                    Batch(id, Status.Ok, data.AsSpan(0, length));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(data);
                }
                return;
            }
            Answer(id, read.AsTask(), data, length);
        }

        /// <summary>A write of <paramref name="data"/>, or with its first range short of its length a split write.</summary>
        private void Write(Frame f, byte[] data, SiloAddress writer)
        {
            var (id, path, offset, length, secondOffset, firstLength) =
                (f.Id, f.Path, f.Offset, f.Length, f.SecondOffset, f.FirstLength);
            var durable = f.Op == Op.WriteDurable;
            ValueTask write;
            try
            {
                write = firstLength == length
                    ? owner.Server.WriteFromAsync(path, offset, data.AsMemory(0, length), writer, durable, commitLater: durable)
                    : owner.Server.WriteSplitFromAsync(
                        path,
                        offset,
                        data.AsMemory(0, firstLength),
                        secondOffset,
                        data.AsMemory(firstLength, length - firstLength),
                        writer);
            }
            catch (Exception ex)
            {
                write = ValueTask.FromException(ex);
            }
            if (write.IsCompletedSuccessfully)
            {
                ArrayPool<byte>.Shared.Return(data);
                if (durable)
                {
                    if (_toCommit.Count == 0) _groupStarted = Stopwatch.GetTimestamp();
                    _toCommit.Add((id, path));
                }
                else Batch(id, Status.Ok, default);
                return;
            }
            Answer(id, durable ? ThenFlushAsync(write, path) : write.AsTask(), data);
        }

        /// <summary>A durable write that did not complete at once: flushed on its own once written.</summary>
        private async Task ThenFlushAsync(ValueTask write, string path)
        {
            await write.ConfigureAwait(false);
            await owner.Server.FlushAsync(path).ConfigureAwait(false);
        }

        /// <summary>Replies when <paramref name="work"/> is done; the connection goes on reading meanwhile.</summary>
        private void Answer(long id, Task work, byte[]? pooled, int replyBytes = 0) => _ = AnswerAsync(id, work, pooled, replyBytes);

        private async Task AnswerAsync(long id, Task work, byte[]? pooled, int replyBytes)
        {
            try
            {
                try
                {
                    await work.ConfigureAwait(false);
                    Reply(id, Status.Ok, pooled is null ? default : pooled.AsSpan(0, replyBytes));
                }
                catch (Exception ex) when (ex is not (IOException or SocketException or ObjectDisposedException))
                {
                    Fail(id, ex);
                }
            }
            catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
            {
                // The caller is gone; it fails its own requests.
            }
            finally
            {
                if (pooled is not null) ArrayPool<byte>.Shared.Return(pooled);
            }
        }

        /// <summary>Answers with the failure: the host's own message for its errors, the exception's for others.</summary>
        private void Fail(long id, Exception ex)
        {
            var (status, message) = ex switch
            {
                CloudRequestException => (Status.RequestError, ex.Message),
                CloudStorageException => (Status.StorageError, ex.Message),
                _ => (Status.StorageError, $"host '{_host}': {ex.GetType().Name}: {ex.Message}"),
            };
            var bytes = Encoding.UTF8.GetBytes(message);
            Reply(id, status, bytes.AsSpan(0, Math.Min(bytes.Length, MaxMessageBytes)));
        }

        /// <summary>
        /// Adds a reply made on the connection's thread to the batch that the loop sends once no request waits: the
        /// replies to requests that arrived together leave in one send, as the requests came in one receive.
        /// </summary>
        private void Batch(long id, Status status, ReadOnlySpan<byte> payload)
        {
            var bytes = ReplyHeaderBytes + payload.Length;
            if (payload.Length > MaxBatchedPayloadBytes)
            {
                // A large read's data is sent from where it was read, not copied: the batch goes first.
                SendBatch();
                Reply(id, status, payload);
                return;
            }
            if (_batched + bytes > _batch.Length) SendBatch();
            if (_batched == 0) _batchStarted = Stopwatch.GetTimestamp();
            WriteReplyHeader(_batch.AsSpan(_batched), id, status, payload.Length);
            payload.CopyTo(_batch.AsSpan(_batched + ReplyHeaderBytes));
            _batched += bytes;
        }

        private void SendBatch()
        {
            if (_batched == 0) return;
            lock (_send) stream.Write(_batch, 0, _batched);
            _batched = 0;
        }

        private void Reply(long id, Status status, ReadOnlySpan<byte> payload)
        {
            lock (_send)
            {
                WriteReplyHeader(_replyHeader, id, status, payload.Length);
                if (payload.Length <= 64 * 1024)
                {
                    // One send for a small reply: header and payload together.
                    var whole = ArrayPool<byte>.Shared.Rent(ReplyHeaderBytes + payload.Length);
                    try
                    {
                        _replyHeader.CopyTo(whole, 0);
                        payload.CopyTo(whole.AsSpan(ReplyHeaderBytes));
                        stream.Write(whole.AsSpan(0, ReplyHeaderBytes + payload.Length));
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(whole);
                    }
                    return;
                }
                stream.Write(_replyHeader);
                stream.Write(payload);
            }
        }
    }
}
