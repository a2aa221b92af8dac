using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Xunit;

namespace Cloud.Testing;

/// <summary>
/// A deliberately small NBD client that speaks the wire format byte by byte, so tests can send exactly the
/// messages they mean, including wrong ones. Every read has a timeout so a hung server fails the test.
/// </summary>
public sealed class RawNbdClient : IAsyncDisposable
{
    public static readonly TimeSpan IoTimeout = TimeSpan.FromSeconds(30);

    private readonly Socket _socket;
    private Stream _stream;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public ushort HandshakeFlags { get; private set; }
    public bool Structured { get; private set; }
    public ulong ExportSize { get; private set; }
    public ushort TransmissionFlags { get; private set; }
    public uint MinBlock { get; private set; }
    public uint PreferredBlock { get; private set; }
    public uint MaxPayload { get; private set; }
    public string? CanonicalName { get; private set; }

    public static async Task<RawNbdClient> ConnectAsync(IPEndPoint endPoint, bool readGreeting = true)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint);
        var client = new RawNbdClient(socket);
        if (readGreeting)
        {
            var hello = await client.ReadAsync(18);
            Assert.Equal(NbdWire.InitPasswd, BinaryPrimitives.ReadUInt64BigEndian(hello));
            Assert.Equal(NbdWire.IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(hello.AsSpan(8)));
            client.HandshakeFlags = BinaryPrimitives.ReadUInt16BigEndian(hello.AsSpan(16));
        }
        return client;
    }

    /// <summary>Connects, negotiates structured replies if asked, and enters transmission with NBD_OPT_GO.</summary>
    public static async Task<RawNbdClient> OpenAsync(IPEndPoint endPoint, string export, bool structured = true)
    {
        var client = await ConnectAsync(endPoint);
        await client.SendClientFlagsAsync(NbdWire.ClientFlagFixedNewstyle | NbdWire.ClientFlagNoZeroes);
        if (structured)
        {
            await client.SendOptionAsync(NbdWire.OptStructuredReply, []);
            var reply = await client.ReadOptionReplyAsync();
            Assert.Equal(NbdWire.RepAck, reply.Type);
            client.Structured = true;
        }
        var (final, _) = await client.InfoOrGoAsync(NbdWire.OptGo, export, [NbdWire.InfoBlockSize, NbdWire.InfoName]);
        Assert.Equal(NbdWire.RepAck, final.Type);
        return client;
    }

    /// <summary>
    /// Sends NBD_OPT_STARTTLS and, when the server ACKs it, runs the TLS handshake as the client (trusting
    /// <paramref name="ca"/>, offering <paramref name="clientCertificate"/>); returns the server's option reply.
    /// </summary>
    public async Task<OptionReply> StartTlsAsync(
        System.Security.Cryptography.X509Certificates.X509Certificate2 ca,
        System.Security.Cryptography.X509Certificates.X509Certificate2? clientCertificate = null)
    {
        await SendOptionAsync(NbdWire.OptStartTls, []);
        var reply = await ReadOptionReplyAsync();
        if (reply.Type != NbdWire.RepAck)
        {
            return reply;
        }
        var ssl = new System.Net.Security.SslStream(_stream, leaveInnerStreamOpen: false);
        using var cts = new CancellationTokenSource(IoTimeout);
        await ssl.AuthenticateAsClientAsync(
            new System.Net.Security.SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                ClientCertificates = clientCertificate is null ? null : [clientCertificate],
                CertificateRevocationCheckMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
                CertificateChainPolicy = new System.Security.Cryptography.X509Certificates.X509ChainPolicy
                {
                    TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust,
                    CustomTrustStore = { ca },
                    RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
                },
            },
            cts.Token);
        _stream = ssl;
        return reply;
    }

    public Task SendClientFlagsAsync(uint flags)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, flags);
        return WriteAsync(b);
    }

    public Task SendOptionAsync(uint option, byte[] data)
    {
        var b = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(b, NbdWire.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), (uint)data.Length);
        data.CopyTo(b, 16);
        return WriteAsync(b);
    }

    public record struct OptionReply(uint Option, uint Type, byte[] Data)
    {
        public string Text => Encoding.UTF8.GetString(Data);
    }

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        var h = await ReadAsync(20);
        Assert.Equal(NbdWire.OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(h));
        var option = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8));
        var type = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
        var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        Assert.True(length <= 1 << 20, $"option reply length {length}");
        return new OptionReply(option, type, await ReadAsync((int)length));
    }

    public static byte[] InfoRequest(string name, params ushort[] infos)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name);
        var b = new byte[4 + nameBytes.Length + 2 + (2 * infos.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)nameBytes.Length);
        nameBytes.CopyTo(b, 4);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4 + nameBytes.Length), (ushort)infos.Length);
        for (var i = 0; i < infos.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4 + nameBytes.Length + 2 + (2 * i)), infos[i]);
        }
        return b;
    }

    /// <summary>Sends INFO or GO and reads replies up to the final one; records the export's details.</summary>
    public async Task<(OptionReply Final, List<OptionReply> Infos)> InfoOrGoAsync(
        uint option,
        string name,
        params ushort[] infos)
    {
        await SendOptionAsync(option, InfoRequest(name, infos));
        var list = new List<OptionReply>();
        while (true)
        {
            var r = await ReadOptionReplyAsync();
            Assert.Equal(option, r.Option);
            if (r.Type != NbdWire.RepInfo)
            {
                return (r, list);
            }
            list.Add(r);
            var infoType = BinaryPrimitives.ReadUInt16BigEndian(r.Data);
            switch (infoType)
            {
                case NbdWire.InfoExport:
                    Assert.Equal(12, r.Data.Length);
                    ExportSize = BinaryPrimitives.ReadUInt64BigEndian(r.Data.AsSpan(2));
                    TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(r.Data.AsSpan(10));
                    break;
                case NbdWire.InfoBlockSize:
                    Assert.Equal(14, r.Data.Length);
                    MinBlock = BinaryPrimitives.ReadUInt32BigEndian(r.Data.AsSpan(2));
                    PreferredBlock = BinaryPrimitives.ReadUInt32BigEndian(r.Data.AsSpan(6));
                    MaxPayload = BinaryPrimitives.ReadUInt32BigEndian(r.Data.AsSpan(10));
                    break;
                case NbdWire.InfoName:
                    CanonicalName = Encoding.UTF8.GetString(r.Data, 2, r.Data.Length - 2);
                    break;
            }
        }
    }

    public Task SendRequestAsync(
        ushort type,
        ulong cookie,
        ulong offset,
        uint length,
        ushort flags = 0,
        byte[]? payload = null,
        uint magic = NbdWire.RequestMagic)
    {
        var b = new byte[28 + (payload?.Length ?? 0)];
        BinaryPrimitives.WriteUInt32BigEndian(b, magic);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), length);
        payload?.CopyTo(b, 28);
        return WriteAsync(b);
    }

    /// <summary>A reply to one request: its error (0 = success) and, for reads, its data.</summary>
    public record struct Reply(ulong Cookie, uint Error, byte[]? Data, string? Message);

    /// <summary>
    /// Reads one complete reply. For structured replies, reads chunks until the DONE flag, assembling data;
    /// <paramref name="reads"/> tells simple replies to reads how much data follows.
    /// </summary>
    public async Task<Reply> ReadReplyAsync(IReadOnlyDictionary<ulong, (ulong Offset, uint Length)>? reads = null)
    {
        var first = await ReadAsync(4);
        var magic = BinaryPrimitives.ReadUInt32BigEndian(first);
        if (magic == NbdWire.SimpleReplyMagic)
        {
            var rest = await ReadAsync(12);
            var error = BinaryPrimitives.ReadUInt32BigEndian(rest);
            var cookie = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
            byte[]? data = null;
            if (error == 0 && reads is not null && reads.TryGetValue(cookie, out var read))
            {
                data = await ReadAsync((int)read.Length);
            }
            return new Reply(cookie, error, data, null);
        }
        Assert.Equal(NbdWire.StructuredReplyMagic, magic);
        uint firstError = 0;
        string? message = null;
        byte[]? assembled = null;
        ulong replyCookie = 0;
        while (true)
        {
            var h = await ReadAsync(16);
            var flags = BinaryPrimitives.ReadUInt16BigEndian(h);
            var type = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(2));
            replyCookie = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(4));
            var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
            var payload = await ReadAsync((int)length);
            switch (type)
            {
                case NbdWire.ReplyTypeNone:
                    Assert.Equal(0u, length);
                    break;
                case NbdWire.ReplyTypeOffsetData:
                    Assert.True(length >= 9);
                    var chunkOffset = BinaryPrimitives.ReadUInt64BigEndian(payload);
                    Assert.NotNull(reads);
                    var (reqOffset, reqLength) = reads![replyCookie];
                    assembled ??= new byte[reqLength];
                    Assert.True(
                        chunkOffset >= reqOffset && chunkOffset + length - 8 <= reqOffset + reqLength,
                        "data chunk outside the request");
                    payload.AsSpan(8).CopyTo(assembled.AsSpan((int)(chunkOffset - reqOffset)));
                    break;
                case NbdWire.ReplyTypeError:
                    firstError = BinaryPrimitives.ReadUInt32BigEndian(payload);
                    Assert.NotEqual(0u, firstError);
                    int messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(4));
                    Assert.True(messageLength <= length - 6);
                    message = Encoding.UTF8.GetString(payload, 6, messageLength);
                    break;
                default:
                    Assert.Fail($"unexpected structured reply type {type}");
                    break;
            }
            if ((flags & NbdWire.ReplyFlagDone) != 0)
            {
                return new Reply(replyCookie, firstError, firstError == 0 ? assembled ?? [] : null, message);
            }
            var next = await ReadAsync(4);
            Assert.Equal(NbdWire.StructuredReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(next));
        }
    }

    public async Task<Reply> ReadBlockAsync(ulong cookie, ulong offset, uint length, ushort flags = 0)
    {
        await SendRequestAsync(NbdWire.CmdRead, cookie, offset, length, flags);
        var reply = await ReadReplyAsync(new Dictionary<ulong, (ulong, uint)> { [cookie] = (offset, length) });
        Assert.Equal(cookie, reply.Cookie);
        return reply;
    }

    public async Task<Reply> CommandAsync(
        ushort type,
        ulong cookie,
        ulong offset,
        uint length,
        ushort flags = 0,
        byte[]? payload = null)
    {
        await SendRequestAsync(type, cookie, offset, length, flags, payload);
        var reply = await ReadReplyAsync();
        Assert.Equal(cookie, reply.Cookie);
        return reply;
    }

    public async Task DisconnectAsync()
    {
        await SendRequestAsync(NbdWire.CmdDisc, 0, 0, 0);
        Assert.True(await IsClosedByServerAsync(), "the server did not close after NBD_CMD_DISC");
    }

    /// <summary>True when the server closes the connection (EOF or reset) within the timeout.</summary>
    public async Task<bool> IsClosedByServerAsync()
    {
        var b = new byte[4096];
        using var cts = new CancellationTokenSource(IoTimeout);
        try
        {
            while (true)
            {
                var n = await _stream.ReadAsync(b, cts.Token);
                if (n == 0)
                {
                    return true;
                }
            }
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public async Task WriteAsync(byte[] data)
    {
        using var cts = new CancellationTokenSource(IoTimeout);
        await _stream.WriteAsync(data, cts.Token);
    }

    public async Task<byte[]> ReadAsync(int length)
    {
        var b = new byte[length];
        using var cts = new CancellationTokenSource(IoTimeout);
        await _stream.ReadExactlyAsync(b, cts.Token);
        return b;
    }

    public void HardClose() => _socket.Close(0);

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
    }
}

/// <summary>
/// The protocol numbers <see cref="RawNbdClient"/> sends and expects, copied from the NBD protocol document
/// (doc/proto.md in the NBD project) rather than taken from the server's own constants, so that a wrong number in
/// the server fails the tests instead of being shared by both sides.
/// </summary>
internal static class NbdWire
{
    public const ulong InitPasswd = 0x4e42444d41474943; // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054; // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x3e889045565a9;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;
    public const uint OptStartTls = 5;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint RepAck = 1;
    public const uint RepInfo = 3;
    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoBlockSize = 3;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const ushort CmdRead = 0;
    public const ushort CmdDisc = 2;
    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeError = 0x8000 + 1;
}
