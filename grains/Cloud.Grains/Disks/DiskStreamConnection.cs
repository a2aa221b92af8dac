using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Cloud.Grains.Abstractions;
using static Cloud.Grains.Disks.DiskStreamProtocol;

namespace Cloud.Grains.Disks;

/// <summary>
/// This silo's connection to another silo's disk stream (<see cref="DiskStreamProtocol"/>) for one writer identity:
/// requests of every member of that host go out on it at once (those issued together in one write), and one thread
/// that blocks on the socket reads the replies, a read's data straight into the caller's buffers, and completes each
/// request on that thread.
/// </summary>
/// <remarks>
/// A request that has been sent is finished only by its reply or by the connection's end, never abandoned, so that a
/// late reply cannot land in a buffer its caller has given back. The connection ends when the peer closes it, on any
/// error of the socket or the protocol, and when a request has waited longer than the response timeout (a host that
/// stopped answering); every request then outstanding fails with <see cref="DiskStreamBrokenException"/>, and the
/// channel's next request connects again.
/// </remarks>
internal sealed class DiskStreamConnection : IDisposable
{
    /// <summary>Largest payload sent in one piece with its header.</summary>
    private const int SmallRequestBytes = 64 * 1024;

    /// <summary>Bytes of small requests sent in one write.</summary>
    private const int BatchBytes = 256 * 1024;

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly ConcurrentQueue<Outgoing> _outbox = new();
    private int _sending;
    private readonly ConcurrentDictionary<long, Pending> _pending = new();
    private readonly Lock _state = new();
    private readonly TimeSpan _responseTimeout;
    private readonly Timer _watchdog;
    private long _nextId;
    private bool _broken;
    private string _why = "the connection is closed";

    private DiskStreamConnection(Socket socket, Stream stream, string endpoint, TimeSpan responseTimeout)
    {
        _socket = socket;
        _stream = stream;
        Endpoint = endpoint;
        _responseTimeout = responseTimeout;
        var period = TimeSpan.FromMilliseconds(Math.Clamp(responseTimeout.TotalMilliseconds / 4, 50, 1000));
        _watchdog = new Timer(_ => Watch(), null, period, period);
        // Last: the receive loop may end at once (a peer that closes right after the hello) and break the connection,
        // which disposes the watchdog. Started before it was made, that loop met a null watchdog, and the exception
        // on its own thread ended the whole process (CI, session 30).
        new Thread(ReceiveLoop) { IsBackground = true, Name = "cloud-disk-stream-client" }.Start();
    }

    /// <summary>The serving silo's stream, <c>address:port</c>.</summary>
    public string Endpoint { get; }

    /// <summary>True once the connection has ended; a new one must be made.</summary>
    public bool IsBroken
    {
        get
        {
            lock (_state) return _broken;
        }
    }

    /// <summary>Connects and says hello; throws <see cref="DiskStreamBrokenException"/> when either fails.</summary>
    public static async Task<DiskStreamConnection> ConnectAsync(
        string endpoint, byte[] key, string writer, DiskStreamTls? tls, TimeSpan connectTimeout, TimeSpan responseTimeout)
    {
        if (!IPEndPoint.TryParse(endpoint, out var address))
            throw new DiskStreamBrokenException($"disk stream endpoint '{endpoint}' is not an address:port");
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            using var timeout = new CancellationTokenSource(connectTimeout);
            await socket.ConnectAsync(address, timeout.Token).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: false);
            if (tls is not null)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                await ssl.AuthenticateAsClientAsync(tls.ClientOptions(), timeout.Token).ConfigureAwait(false);
            }
            var writerBytes = Encoding.UTF8.GetBytes(writer);
            var hello = new byte[8 + key.Length + 2 + writerBytes.Length];
            BinaryPrimitives.WriteUInt32LittleEndian(hello, Magic);
            BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(4), ProtocolVersion);
            BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(6), (ushort)key.Length);
            key.CopyTo(hello, 8);
            BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(8 + key.Length), (ushort)writerBytes.Length);
            writerBytes.CopyTo(hello, 10 + key.Length);
            await stream.WriteAsync(hello, timeout.Token).ConfigureAwait(false);
            var answer = new byte[1];
            await stream.ReadExactlyAsync(answer, timeout.Token).ConfigureAwait(false);
            if (answer[0] != 0)
            {
                var length = new byte[2];
                await stream.ReadExactlyAsync(length, timeout.Token).ConfigureAwait(false);
                var message = new byte[BinaryPrimitives.ReadUInt16LittleEndian(length)];
                await stream.ReadExactlyAsync(message, timeout.Token).ConfigureAwait(false);
                throw new DiskStreamBrokenException(
                    $"disk stream {endpoint} refused the connection: {Encoding.UTF8.GetString(message)}");
            }
            return new DiskStreamConnection(socket, stream, endpoint, responseTimeout);
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException
                                       or AuthenticationException)
        {
            if (stream is not null) await stream.DisposeAsync().ConfigureAwait(false);
            socket.Dispose();
            var why = ex is OperationCanceledException ? $"no answer in {connectTimeout.TotalSeconds} s" : ex.Message;
            throw new DiskStreamBrokenException($"disk stream {endpoint} cannot be reached: {why}", ex);
        }
        catch
        {
            if (stream is not null) await stream.DisposeAsync().ConfigureAwait(false);
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Reads <paramref name="totalBytes"/> at <paramref name="offset"/> into the pieces in turn.</summary>
    public Task ReadAsync(byte[] path, long offset, IReadOnlyList<Memory<byte>> destinations, int totalBytes) =>
        RequestAsync(Op.Read, path, offset, totalBytes, [], destinations);

    /// <summary>Writes the pieces (<paramref name="totalBytes"/> in all) in turn at <paramref name="offset"/>.</summary>
    public Task WriteAsync(
        byte[] path, long offset, IReadOnlyList<ReadOnlyMemory<byte>> sources, int totalBytes, bool durable) =>
        RequestAsync(durable ? Op.WriteDurable : Op.Write, path, offset, totalBytes, sources, null);

    /// <summary>Flushes the member on its host.</summary>
    public Task FlushAsync(byte[] path) => RequestAsync(Op.Flush, path, 0, 0, [], null);

    /// <summary>Reads two ranges of the member as one request (<see cref="Op.ReadSplit"/>).</summary>
    public Task ReadSplitAsync(byte[] path, long offset, Memory<byte> first, long secondOffset, Memory<byte> second) =>
        RequestAsync(Op.ReadSplit, path, offset, first.Length + second.Length, [], [first, second], (secondOffset, first.Length));

    /// <summary>Writes two ranges of the member as one request (<see cref="Op.WriteSplit"/>).</summary>
    public Task WriteSplitAsync(byte[] path, long offset, ReadOnlyMemory<byte> first, long secondOffset, ReadOnlyMemory<byte> second) =>
        RequestAsync(
            Op.WriteSplit,
            path,
            offset,
            first.Length + second.Length,
            [first, second],
            null,
            (secondOffset, first.Length));

    private async Task RequestAsync(
        Op op,
        byte[] path,
        long offset,
        int length,
        IReadOnlyList<ReadOnlyMemory<byte>> sources,
        IReadOnlyList<Memory<byte>>? destinations,
        (long SecondOffset, int FirstLength)? split = null)
    {
        var id = Interlocked.Increment(ref _nextId);
        var pending = new Pending(destinations, destinations is null ? 0 : length);
        lock (_state)
        {
            if (_broken) throw new DiskStreamBrokenException(_why);
            _pending[id] = pending;
        }
        // A small request goes out with its payload copied behind the header; a large one sends its pieces in turn
        // from the caller's buffers, which stay the caller's until the reply.
        var payload = sources.Count == 0 ? 0 : length;
        var inline = payload <= SmallRequestBytes;
        var headerBytes = RequestHeaderBytes + path.Length + (split is null ? 0 : SplitBytes);
        var header = ArrayPool<byte>.Shared.Rent(headerBytes + (inline ? payload : 0));
        WriteRequestHeader(header, op, path.Length, id, offset, length);
        path.CopyTo(header, RequestHeaderBytes);
        if (split is { } two) WriteSplit(header.AsSpan(RequestHeaderBytes + path.Length), two.SecondOffset, two.FirstLength);
        var at = headerBytes;
        if (inline)
        {
            foreach (var source in sources)
            {
                source.Span.CopyTo(header.AsSpan(at));
                at += source.Length;
            }
        }
        _outbox.Enqueue(new Outgoing(header, at, inline ? null : sources));
        await SendAsync().ConfigureAwait(false);
        await pending.Done.Task.ConfigureAwait(false);
    }

    /// <summary>
    /// Sends what the outbox holds, unless another caller is sending it already: the requests that queued meanwhile go
    /// out together, the small ones in one write, so that concurrent requests to a host cost one system call (and one
    /// wake-up of the host's connection thread) between them rather than one each.
    /// </summary>
    private async ValueTask SendAsync()
    {
        while (Interlocked.CompareExchange(ref _sending, 1, 0) == 0)
        {
            try
            {
                await DrainAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
            {
                // The receive loop ends too, and fails every request outstanding.
                Break($"sending to {Endpoint} failed: {ex.Message}");
                return;
            }
            finally
            {
                // A full fence: a request queued after the drain's last look is seen by the check below.
                Interlocked.Exchange(ref _sending, 0);
            }
            if (_outbox.IsEmpty) return;
        }
    }

    private async Task DrainAsync()
    {
        var batch = ArrayPool<byte>.Shared.Rent(BatchBytes);
        try
        {
            var at = 0;
            while (_outbox.TryDequeue(out var request))
            {
                try
                {
                    if (request.Pieces is null && at + request.HeaderBytes <= batch.Length)
                    {
                        request.Header.AsSpan(0, request.HeaderBytes).CopyTo(batch.AsSpan(at));
                        at += request.HeaderBytes;
                        continue;
                    }
                    if (at > 0)
                    {
                        await _stream.WriteAsync(batch.AsMemory(0, at)).ConfigureAwait(false);
                        at = 0;
                    }
                    await _stream.WriteAsync(request.Header.AsMemory(0, request.HeaderBytes)).ConfigureAwait(false);
                    foreach (var piece in request.Pieces ?? [])
                        await _stream.WriteAsync(piece).ConfigureAwait(false);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(request.Header);
                }
            }
            if (at > 0) await _stream.WriteAsync(batch.AsMemory(0, at)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(batch);
        }
    }

    private void ReceiveLoop()
    {
        var header = new byte[ReplyHeaderBytes];
        var reader = new FrameReader(_stream);
        Pending? current = null;
        try
        {
            while (true)
            {
                current = null;
                reader.ReadExactly(header);
                var id = BinaryPrimitives.ReadInt64LittleEndian(header);
                var status = (Status)header[8];
                var length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12));
                if (!_pending.TryRemove(id, out var pending))
                    throw new InvalidDataException($"a reply for request {id}, which is not outstanding");
                current = pending;
                if (status == Status.Ok)
                {
                    if (length != pending.Expected)
                        throw new InvalidDataException($"a reply of {length} bytes to a request for {pending.Expected}");
                    if (pending.Destinations is { } destinations)
                        foreach (var destination in destinations) reader.ReadExactly(destination.Span);
                    pending.Done.TrySetResult();
                    continue;
                }
                if (length is < 0 or > MaxMessageBytes)
                    throw new InvalidDataException($"an error reply of {length} bytes");
                var message = new byte[length];
                reader.ReadExactly(message);
                var text = Encoding.UTF8.GetString(message);
                pending.Done.TrySetException(status == Status.RequestError
                    ? new CloudRequestException(text)
                    : new CloudStorageException(text));
            }
        }
        catch (Exception ex)
        {
            Break(ex switch
            {
                EndOfStreamException => $"{Endpoint} closed the disk stream",
                InvalidDataException => $"{Endpoint} broke the disk stream's protocol: {ex.Message}",
                _ => $"the disk stream to {Endpoint} failed: {ex.Message}",
            });
            // Every request outstanding now, and any registered from here on, fails: none can be answered. So does
            // the one whose reply was being read.
            current?.Done.TrySetException(new DiskStreamBrokenException(_why));
            foreach (var id in _pending.Keys)
                if (_pending.TryRemove(id, out var pending))
                    pending.Done.TrySetException(new DiskStreamBrokenException(_why));
        }
    }

    /// <summary>Ends the connection when a request has waited longer than the response timeout.</summary>
    private void Watch()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var pending in _pending.Values)
        {
            if (Stopwatch.GetElapsedTime(pending.Started, now) > _responseTimeout)
            {
                Break($"{Endpoint} did not answer a request within {_responseTimeout.TotalSeconds} s");
                return;
            }
        }
    }

    private void Break(string why)
    {
        lock (_state)
        {
            if (_broken) return;
            _broken = true;
            _why = why;
        }
        _watchdog.Dispose();
        // Shutting the socket down wakes the receive loop, which fails what is outstanding.
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        _stream.Dispose();
        _socket.Dispose();
    }

    /// <inheritdoc />
    public void Dispose() => Break("the connection was closed by this silo");

    /// <summary>A request waiting to be sent: its header (with a small payload behind it), or the header and pieces.</summary>
    private sealed record Outgoing(byte[] Header, int HeaderBytes, IReadOnlyList<ReadOnlyMemory<byte>>? Pieces);

    private sealed class Pending(IReadOnlyList<Memory<byte>>? destinations, int expected)
    {
        // Completed on the receive thread; the caller's continuation runs there, with no hop to the thread pool.
        public readonly TaskCompletionSource Done = new();

        public readonly IReadOnlyList<Memory<byte>>? Destinations = destinations;

        public readonly int Expected = expected;

        public readonly long Started = Stopwatch.GetTimestamp();
    }
}

/// <summary>The disk stream to a host could not be used: not reached, refused, closed or timed out.</summary>
internal sealed class DiskStreamBrokenException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// This silo's disk stream connections, one per serving silo and writer identity, made on first use and again after
/// one breaks.
/// </summary>
public sealed class DiskStreamClient : IDisposable
{
    /// <summary>How long a connection and its hello may take.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);

    private readonly Dictionary<(string Endpoint, string Writer), Task<DiskStreamConnection>> _connections = [];
    private readonly Lock _gate = new();
    private readonly TimeSpan _responseTimeout;
    private readonly DiskStreamTls? _tls;
    private bool _disposed;

    /// <param name="responseTimeout">How long a request may wait for its reply before its connection is ended.</param>
    /// <param name="tls">Mutual TLS with the silos' certificates, when the silos speak TLS; null for plaintext.</param>
    public DiskStreamClient(TimeSpan responseTimeout, DiskStreamTls? tls = null)
    {
        _responseTimeout = responseTimeout;
        _tls = tls;
    }

    /// <summary>The live connection to <paramref name="endpoint"/> for <paramref name="writer"/>, connecting when needed.</summary>
    internal Task<DiskStreamConnection> GetAsync(string endpoint, byte[] key, string writer)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connections.TryGetValue((endpoint, writer), out var existing)
                && !(existing.IsFaulted || existing.IsCanceled
                     || (existing.IsCompletedSuccessfully && existing.Result.IsBroken)))
                return existing;
            var connecting = DiskStreamConnection.ConnectAsync(
                endpoint, key, writer, _tls, ConnectTimeout, _responseTimeout);
            _connections[(endpoint, writer)] = connecting;
            return connecting;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            foreach (var connection in _connections.Values)
                if (connection.IsCompletedSuccessfully) connection.Result.Dispose();
            _connections.Clear();
        }
    }
}
