using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Cloud.Nbd;

/// <summary>
/// An NBD server (fixed newstyle handshake) that serves the volumes an <see cref="INbdExportResolver"/> names,
/// on a TCP address and/or a Unix domain socket. Use it directly (<see cref="StartAsync"/>/<see cref="StopAsync"/>)
/// or through <see cref="NbdServiceCollectionExtensions.AddNbdServer"/> in a host.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    /// <summary>Pending connections the kernel queues before <c>accept</c>.</summary>
    public const int ListenBacklog = 128;

    private readonly INbdExportResolver _resolver;
    private readonly NbdServerOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<long, (NbdConnection Connection, Task Run)> _connections = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _aborting = new();
    private long _nextConnectionId;
    private int _state; // 0 new, 1 started, 2 stopped
    private readonly string[] _congestionControl;
    private int _congestionWarned;
    private NbdTlsCredentials? _tls;

    /// <summary>Creates a server; nothing listens until <see cref="StartAsync"/>.</summary>
    public NbdServer(INbdExportResolver resolver, IOptions<NbdServerOptions> options, ILogger<NbdServer>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(resolver);
        ArgumentNullException.ThrowIfNull(options);
        _resolver = resolver;
        _options = options.Value;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _congestionControl = TcpCongestion.ParseList(_options.CongestionControl);
    }

    /// <summary>
    /// The bound TCP endpoint once started (with the real port when <see cref="NbdServerOptions.AnyFreePort"/> was
    /// asked), or null.
    /// </summary>
    public IPEndPoint? TcpEndPoint { get; private set; }

    /// <summary>The Unix socket path once started, or null.</summary>
    public string? UnixSocketPath { get; private set; }

    /// <summary>Connections open right now.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>
    /// Binds the listeners and starts accepting. Throws when the options are invalid or a listener cannot bind.
    /// </summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            throw new InvalidOperationException("NbdServer.StartAsync may be called once.");
        }
        NbdServerOptionsValidator.ThrowIfInvalid(_options);
        _tls = NbdTlsCredentials.TryLoad(_options, out var tlsError);
        if (tlsError is not null)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(NbdServerOptions), [tlsError]);
        }
        if (_tls is not null)
        {
            Log.TlsEnabled(_logger, _options.Tls.ToString().ToLowerInvariant(), _tls.Kind);
        }
        try
        {
            if (_options.Port != NbdServerOptions.PortOff)
            {
                var address = IPAddress.Parse(_options.Address);
                var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                _listeners.Add(listener);
                var port = _options.Port == NbdServerOptions.AnyFreePort ? 0 : _options.Port;
                try
                {
                    listener.Bind(new IPEndPoint(address, port));
                }
                catch (SocketException e)
                {
                    throw new IOException($"NBD server cannot listen on {address}:{port}: {e.Message}", e);
                }
                listener.Listen(ListenBacklog);
                TcpEndPoint = (IPEndPoint)listener.LocalEndPoint!;
                _acceptLoops.Add(AcceptLoopAsync(listener, isTcp: true));
                Log.Listening(_logger, TcpEndPoint.ToString());
            }
            if (!string.IsNullOrEmpty(_options.UnixSocketPath))
            {
                var path = Path.GetFullPath(_options.UnixSocketPath);
                if (File.Exists(path))
                {
                    // A socket file left by an earlier run is empty; refuse to delete anything else.
                    if (new FileInfo(path).Length != 0)
                    {
                        throw new IOException(
                            $"NbdServerOptions.UnixSocketPath '{path}' exists and is not a socket; remove it or choose another path.");
                    }
                    File.Delete(path);
                }
                var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                _listeners.Add(listener);
                listener.Bind(new UnixDomainSocketEndPoint(path));
                listener.Listen(ListenBacklog);
                UnixSocketPath = path;
                _acceptLoops.Add(AcceptLoopAsync(listener, isTcp: false));
                Log.Listening(_logger, "unix:" + path);
            }
            if (_listeners.Count == 0)
            {
                Log.Disabled(_logger);
            }
        }
        catch
        {
            foreach (var l in _listeners)
            {
                l.Dispose();
            }
            throw;
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// Stops accepting, stops reading new requests, waits up to <see cref="NbdServerOptions.ShutdownTimeout"/>
    /// (or until <paramref name="cancellationToken"/> fires) for in-flight requests to reply, then closes every
    /// connection.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _state, 2) != 1)
        {
            return;
        }
        _stopping.Cancel();
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        if (UnixSocketPath is not null)
        {
            try
            {
                File.Delete(UnixSocketPath);
            }
            catch (IOException)
            {
            }
        }

        var runs = _connections.Values.Select(c => c.Run).ToArray();
        var all = Task.WhenAll(runs);
        try
        {
            await all.WaitAsync(_options.ShutdownTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            Log.ShutdownAbortingConnections(_logger, _connections.Count);
            _aborting.Cancel();
            foreach (var (connection, _) in _connections.Values)
            {
                connection.Abort();
            }
            await all.ConfigureAwait(false);
        }
        Log.Stopped(_logger);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stopping.Dispose();
        _aborting.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener, bool isTcp)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e)
                when (e is OperationCanceledException or ObjectDisposedException || _stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // Transient accept failures (e.g. the client reset before accept): keep listening.
                Log.AcceptFailed(_logger, e.Message);
                continue;
            }

            var remote = isTcp ? socket.RemoteEndPoint?.ToString() ?? "tcp" : "unix";
            if (_connections.Count >= _options.MaxConnections)
            {
                Log.TooManyConnections(_logger, remote, _options.MaxConnections);
                socket.Dispose();
                continue;
            }
            try
            {
                if (isTcp)
                {
                    // The protocol asks both ends to disable Nagle: replies are small and latency-bound.
                    socket.NoDelay = true;
                    SetCongestionControl(socket);
                }
                if (_options.SocketBufferBytes > 0)
                {
                    socket.SendBufferSize = _options.SocketBufferBytes;
                    socket.ReceiveBufferSize = _options.SocketBufferBytes;
                }
            }
            catch (SocketException e)
            {
                Log.AcceptFailed(_logger, e.Message);
                socket.Dispose();
                continue;
            }

            var id = Interlocked.Increment(ref _nextConnectionId);
            var connection = new NbdConnection(
                id, socket, remote, _resolver, _options, _tls, _logger, _stopping.Token, _aborting.Token);
            Log.Accepted(_logger, id, remote);
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var run = RunConnectionAsync(connection, gate.Task);
            _connections[id] = (connection, run);
            gate.SetResult();
        }
    }

    /// <summary>
    /// Applies <see cref="NbdServerOptions.CongestionControl"/>; warns once if the kernel accepts none of it.
    /// </summary>
    private void SetCongestionControl(Socket socket)
    {
        if (_congestionControl.Length == 0 || !TcpCongestion.Supported)
        {
            return;
        }
        if (TcpCongestion.TrySet(socket, _congestionControl, out var refusals) is null
            && Interlocked.Exchange(ref _congestionWarned, 1) == 0)
        {
            Log.CongestionControlRefused(
                _logger,
                TcpCongestion.Get(socket) ?? "unknown",
                _options.CongestionControl,
                refusals,
                TcpCongestion.Allowed());
        }
    }

    private async Task RunConnectionAsync(NbdConnection connection, Task registered)
    {
        // Wait until the connection is in the table, so its removal below cannot precede its insertion.
        await registered.ConfigureAwait(false);
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            _connections.TryRemove(connection.Id, out _);
            Log.Closed(_logger, connection.Id, connection.Remote);
        }
    }
}
