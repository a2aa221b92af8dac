using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using static Cloud.Grains.Disks.DiskStreamProtocol;

namespace Cloud.Grains.Disks;

/// <summary>
/// The disk service's stream side on this silo: a TCP listener on the silo's own address whose connections carry the
/// other silos' member I/O (<see cref="DiskStreamProtocol"/>) to <see cref="DiskServer"/>, which checks and fences
/// each request as it does a grain call's.
/// </summary>
/// <remarks>
/// Each connection has a thread of its own that blocks on its socket, reads a request whole and runs it: a member
/// read or write of the page cache completes right there and its reply is sent from the same thread, with no
/// thread-pool hop and one receive for a request's payload instead of Orleans' reads of a few KiB each. A request
/// that must wait (a flush, a durable write's fsync, an open) goes on asynchronously and is answered when done, so the
/// connection keeps reading and concurrent flushes share one <c>fdatasync</c>. Only a caller that knows the key,
/// which this silo gives with a member's geometry in a disk grain call, gets a connection.
/// </remarks>
public sealed partial class DiskStreamListener(
    DiskServer server,
    ILocalSiloDetails silo,
    IOptions<CloudOptions> options,
    ILogger<DiskStreamListener> logger,
    DiskStreamTls? tls = null) : IHostedService, IDisposable
{
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(KeyBytes);
    private Socket? _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Socket> _connections = [];

    /// <summary>How long a new connection may take for its TLS handshake and hello.</summary>
    public static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(10);

    private DiskServer Server => server;

    private string Host => options.Value.HostName;

    /// <summary>Where callers connect (<c>address:port</c>); null while the stream is off or not yet listening.</summary>
    public string? Endpoint { get; private set; }

    /// <summary>The key a caller presents, given out with a member's geometry; empty while the stream is off.</summary>
    public byte[] Key => Endpoint is null ? [] : _key;

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!string.Equals(options.Value.DiskTransport, CloudOptions.StreamDiskTransport, StringComparison.OrdinalIgnoreCase))
        {
            LogStreamOff(logger, options.Value.DiskTransport);
            return Task.CompletedTask;
        }
        var address = silo.SiloAddress.Endpoint.Address;
        var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(address, options.Value.DiskStreamPort));
            listener.Listen(64);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            // The grain path still serves every member; only the faster stream is missing.
            LogListenFailed(logger, $"{address}:{options.Value.DiskStreamPort}", ex.Message);
            return Task.CompletedTask;
        }
        _listener = listener;
        var bound = (IPEndPoint)listener.LocalEndPoint!;
        Endpoint = bound.ToString();
        LogListening(logger, Endpoint, tls is null ? "plaintext" : "mutual TLS");
        _ = AcceptLoopAsync(listener);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Endpoint = null;
        if (!_stopping.IsCancellationRequested) _stopping.Cancel();
        _listener?.Dispose();
        lock (_connections)
        {
            foreach (var c in _connections) c.Dispose();
            _connections.Clear();
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stopping.IsCancellationRequested) return;
                await Task.Delay(100).ConfigureAwait(false);
                continue;
            }
            socket.NoDelay = true;
            lock (_connections)
            {
                if (_stopping.IsCancellationRequested)
                {
                    socket.Dispose();
                    return;
                }
                _connections.Add(socket);
            }
            new Thread(() => Serve(socket)) { IsBackground = true, Name = "cloud-disk-stream" }.Start();
        }
    }

    private void Serve(Socket socket)
    {
        var peer = socket.RemoteEndPoint?.ToString() ?? "?";
        Stream stream = new NetworkStream(socket, ownsSocket: false);
        try
        {
            // A caller has this long to finish its TLS handshake and hello; then requests may come at any pace.
            socket.ReceiveTimeout = socket.SendTimeout = (int)HelloTimeout.TotalMilliseconds;
            if (tls is not null)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                ssl.AuthenticateAsServer(tls.ServerOptions());
            }
            var writer = Hello(stream, peer);
            if (writer is null) return;
            socket.ReceiveTimeout = socket.SendTimeout = 0;
            var served = new ServedConnection(this, socket, stream);
            try
            {
                served.Run(writer);
            }
            finally
            {
                served.Stop();
            }
        }
        catch (Exception ex)
        {
            // A thread of its own must not let anything escape (that would end the process); the caller sees the
            // connection end and fails its requests as unreachable. A peer that went away is no news.
            if (!_stopping.IsCancellationRequested && ex is not (IOException or SocketException or ObjectDisposedException))
                LogProtocolError(logger, peer, ex.Message);
        }
        finally
        {
            lock (_connections) _connections.Remove(socket);
            stream.Dispose();
            socket.Dispose();
        }
    }

    /// <summary>Checks the caller's key and writer address; null (and the connection refused) when either is bad.</summary>
    private SiloAddress? Hello(Stream stream, string peer)
    {
        Span<byte> fixedPart = stackalloc byte[8];
        stream.ReadExactly(fixedPart);
        var magic = BinaryPrimitives.ReadUInt32LittleEndian(fixedPart);
        var version = BinaryPrimitives.ReadUInt16LittleEndian(fixedPart[4..]);
        var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(fixedPart[6..]);
        if (magic != Magic || keyLength > MaxKeyBytes)
            throw new InvalidDataException("not a disk stream hello");
        var key = new byte[keyLength];
        stream.ReadExactly(key);
        Span<byte> lengthBytes = stackalloc byte[2];
        stream.ReadExactly(lengthBytes);
        var writerLength = BinaryPrimitives.ReadUInt16LittleEndian(lengthBytes);
        if (writerLength > MaxWriterBytes) throw new InvalidDataException("the hello's writer is too long");
        var writerBytes = new byte[writerLength];
        stream.ReadExactly(writerBytes);

        string? refusal = null;
        SiloAddress? writer = null;
        if (version is < MinProtocolVersion or > ProtocolVersion)
            refusal = $"disk stream version {version} is not served; this silo speaks versions {MinProtocolVersion}-{ProtocolVersion}";
        else if (!CryptographicOperations.FixedTimeEquals(key, _key))
            refusal = "the disk stream key is not this silo's; open the member through its disk grain first";
        else
        {
            try
            {
                writer = SiloAddress.FromParsableString(Encoding.UTF8.GetString(writerBytes));
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException or IndexOutOfRangeException)
            {
                refusal = $"writer '{Encoding.UTF8.GetString(writerBytes)}' is not a silo address";
            }
        }
        if (refusal is null)
        {
            stream.Write([0]);
            return writer;
        }
        LogRefused(logger, peer, refusal);
        var message = Encoding.UTF8.GetBytes(refusal);
        var reply = new byte[3 + message.Length];
        reply[0] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(1), (ushort)message.Length);
        message.CopyTo(reply, 3);
        stream.Write(reply);
        return null;
    }
}
