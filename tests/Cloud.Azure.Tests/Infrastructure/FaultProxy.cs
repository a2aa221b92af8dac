using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Cloud.Azure.Tests.Infrastructure;

/// <summary>What the proxy does to one HTTP request.</summary>
public enum ProxyFault
{
    /// <summary>Forward it and relay the whole response.</summary>
    None,

    /// <summary>Answer 503 ServerBusy without forwarding (throttling).</summary>
    ServerBusy503,

    /// <summary>Answer 500 InternalError without forwarding.</summary>
    InternalError500,

    /// <summary>Reset the connection before forwarding anything.</summary>
    DropBeforeForward,

    /// <summary>Forward it, relay part of the response, then reset the connection.</summary>
    DropMidResponse,

    /// <summary>
    /// Forward it (the service applies it), then reset the connection before any response byte: a lost acknowledgement.
    /// </summary>
    LoseResponse,
}

/// <summary>The parts of a request a fault decision may look at.</summary>
public readonly record struct ProxyRequest(string Method, string Target, string? Range);

/// <summary>
/// A loopback HTTP/1.1 proxy in front of Azurite that injects faults per request: throttling
/// statuses, dropped connections and lost acknowledgements. It handles one request per client
/// connection (it adds <c>Connection: close</c> on the way in, so the service closes after answering
/// and the client opens a new connection for its next request), which keeps it free of response parsing.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    /// <summary>Largest request head the proxy accepts.</summary>
    public const int MaxHeadBytes = 64 * 1024;

    /// <summary>Largest request body the proxy buffers (a Put Page carries at most 4 MiB).</summary>
    public const int MaxBodyBytes = 8 * 1024 * 1024;

    private readonly TcpListener _listener;
    private readonly int _upstreamPort;
    private readonly Func<ProxyRequest, ProxyFault> _decide;
    private readonly TimeSpan _holdBeforeForward;
    private readonly int? _cutAfterBytes;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly List<Task> _connections = [];
    private readonly int[] _faultCounts = new int[Enum.GetValues<ProxyFault>().Length];
    private int _requestsWaitingForResponse;
    private int _maxRequestsWaitingForResponse;

    /// <param name="upstreamPort">Azurite's port on 127.0.0.1.</param>
    /// <param name="decide">Called once per request; must be thread-safe.</param>
    /// <param name="holdBeforeForward">A pause before each forwarded request, so that concurrent requests overlap at
    /// the proxy.</param>
    /// <param name="cutAfterBytes">Where <see cref="ProxyFault.DropMidResponse"/> cuts; by default 100-3100 bytes, from
    /// the request target.</param>
    public FaultProxy(
        int upstreamPort,
        Func<ProxyRequest, ProxyFault> decide,
        TimeSpan holdBeforeForward = default,
        int? cutAfterBytes = null)
    {
        _cutAfterBytes = cutAfterBytes;
        _upstreamPort = upstreamPort;
        _decide = decide;
        _holdBeforeForward = holdBeforeForward;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptLoopAsync();
    }

    /// <summary>The port clients connect to.</summary>
    public int Port { get; }

    /// <summary>
    /// The most requests that were at the proxy at once between their arrival and the first byte of their
    /// answer. A client cannot finish a request before that first byte, so this never exceeds the client's
    /// own number of requests in flight.
    /// </summary>
    public int MaxConcurrentRequests => Volatile.Read(ref _maxRequestsWaitingForResponse);

    /// <summary>How many requests met <paramref name="fault"/>.</summary>
    public int Count(ProxyFault fault) => Volatile.Read(ref _faultCounts[(int)fault]);

    /// <summary>How many requests met any fault other than <see cref="ProxyFault.None"/>.</summary>
    public int InjectedFaults => Enum.GetValues<ProxyFault>().Where(f => f != ProxyFault.None).Sum(Count);

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _acceptLoop.ConfigureAwait(false);
        Task[] connections;
        lock (_connections)
        {
            connections = [.. _connections];
        }

        await Task.WhenAll(connections).ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }

            Task connection = HandleAsync(client);
            lock (_connections)
            {
                _connections.RemoveAll(t => t.IsCompleted);
                _connections.Add(connection);
            }
        }
    }

    private async Task HandleAsync(Socket client)
    {
        using (client)
        {
            try
            {
                await HandleOneRequestAsync(client, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
                // The client gave up on this connection (its own timeout or our reset): nothing to relay.
            }
        }
    }

    private async Task HandleOneRequestAsync(Socket client, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxHeadBytes];
        var filled = 0;
        int headEnd;
        while ((headEnd = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
        {
            if (filled == buffer.Length)
            {
                throw new IOException($"Request head longer than {MaxHeadBytes} bytes.");
            }

            var n = await client.ReceiveAsync(buffer.AsMemory(filled), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return;
            }

            filled += n;
        }

        var head = Encoding.ASCII.GetString(buffer, 0, headEnd);
        var lines = head.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        var headers = lines.Skip(1)
            .Select(l => l.Split(':', 2))
            .Where(p => p.Length == 2)
            .Select(p => (Name: p[0].Trim(), Value: p[1].Trim()))
            .ToList();
        string? Header(string name)
            => headers.FirstOrDefault(h => h.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Value;

        var request = new ProxyRequest(requestLine[0], requestLine[1], Header("x-ms-range") ?? Header("Range"));
        ProxyFault fault = _decide(request);
        Interlocked.Increment(ref _faultCounts[(int)fault]);
        var waiting = Interlocked.Increment(ref _requestsWaitingForResponse);
        UpdateMax(waiting);
        var answered = false;
        void MarkAnswered()
        {
            if (!answered)
            {
                answered = true;
                Interlocked.Decrement(ref _requestsWaitingForResponse);
            }
        }

        try
        {
            if (fault == ProxyFault.DropBeforeForward)
            {
                MarkAnswered();
                Reset(client);
                return;
            }

            // The whole body, so that a fault answer is not mistaken by the client for a reset mid-upload.
            var contentLength = long.TryParse(Header("Content-Length"), out var length) ? length : 0;
            if (contentLength > MaxBodyBytes)
            {
                throw new IOException($"Request body of {contentLength} bytes is over the proxy's {MaxBodyBytes}.");
            }

            var body = new byte[contentLength];
            var already = Math.Min(filled - (headEnd + 4), (int)contentLength);
            buffer.AsSpan(headEnd + 4, already).CopyTo(body);
            for (var got = already; got < body.Length;)
            {
                var n = await client.ReceiveAsync(body.AsMemory(got), cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    return;
                }

                got += n;
            }

            if (fault is ProxyFault.ServerBusy503 or ProxyFault.InternalError500)
            {
                var busy = fault == ProxyFault.ServerBusy503;
                var code = busy ? "ServerBusy" : "InternalError";
                var xml = $"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>Injected by the test proxy.</Message></Error>";
                var response = $"HTTP/1.1 {(busy ? "503 Service Unavailable" : "500 Internal Server Error")}\r\n"
                    + $"Content-Type: application/xml\r\nx-ms-error-code: {code}\r\nContent-Length: {Encoding.UTF8.GetByteCount(xml)}\r\nConnection: close\r\n\r\n{xml}";
                MarkAnswered();
                await client.SendAsync(Encoding.UTF8.GetBytes(response), cancellationToken).ConfigureAwait(false);
                client.Shutdown(SocketShutdown.Send);
                return;
            }

            if (_holdBeforeForward > TimeSpan.Zero)
            {
                await Task.Delay(_holdBeforeForward, cancellationToken).ConfigureAwait(false);
            }

            var upstreamHead = new StringBuilder();
            upstreamHead.Append(lines[0]).Append("\r\n");
            foreach (var (name, value) in headers)
            {
                if (!name.Equals("Connection", StringComparison.OrdinalIgnoreCase)
                    && !name.Equals("Keep-Alive", StringComparison.OrdinalIgnoreCase))
                {
                    upstreamHead.Append(name).Append(": ").Append(value).Append("\r\n");
                }
            }

            upstreamHead.Append("Connection: close\r\n\r\n");
            using var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await upstream.ConnectAsync(IPAddress.Loopback, _upstreamPort, cancellationToken).ConfigureAwait(false);
            await upstream.SendAsync(
                Encoding.ASCII.GetBytes(upstreamHead.ToString()), cancellationToken).ConfigureAwait(false);
            if (body.Length > 0)
            {
                await upstream.SendAsync(body, cancellationToken).ConfigureAwait(false);
            }

            // Where a mid-response drop cuts: inside the head for small answers, inside the body for reads.
            var cutAfterBytes = fault != ProxyFault.DropMidResponse
                ? int.MaxValue
                : _cutAfterBytes ?? 100 + (int)((uint)request.Target.Aggregate(17, (h, c) => (h * 31) + c) % 3000);
            var relay = new byte[64 * 1024];
            long relayed = 0;
            while (true)
            {
                var n = await upstream.ReceiveAsync(relay, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                if (fault == ProxyFault.LoseResponse)
                {
                    continue; // The service has applied the request; the client never hears of it.
                }

                MarkAnswered();
                var send = (int)Math.Min(n, cutAfterBytes - relayed);
                await client.SendAsync(relay.AsMemory(0, send), cancellationToken).ConfigureAwait(false);
                relayed += send;
                if (relayed >= cutAfterBytes)
                {
                    Reset(client);
                    return;
                }
            }

            if (fault == ProxyFault.LoseResponse)
            {
                MarkAnswered();
                Reset(client);
                return;
            }

            client.Shutdown(SocketShutdown.Send);
        }
        finally
        {
            MarkAnswered();
        }
    }

    private void UpdateMax(int value)
    {
        int seen;
        while (value > (seen = Volatile.Read(ref _maxRequestsWaitingForResponse))
            && Interlocked.CompareExchange(ref _maxRequestsWaitingForResponse, value, seen) != seen)
        {
        }
    }

    // Linger 0 turns Close into a TCP reset: the client sees a dropped connection, not a clean end.
    private static void Reset(Socket socket)
    {
        socket.LingerState = new LingerOption(true, 0);
        socket.Close();
    }
}
