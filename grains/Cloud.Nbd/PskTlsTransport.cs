using System.Net.Sockets;
using System.Text;
using Org.BouncyCastle.Security;
using Org.BouncyCastle.Tls;
using Org.BouncyCastle.Tls.Crypto.Impl.BC;

namespace Cloud.Nbd;

/// <summary>
/// TLS-PSK for NBD with BouncyCastle (.NET's <c>SslStream</c> has no PSK cipher suites): TLS 1.2 with the
/// (EC)DHE-PSK suites that gnutls in qemu and libnbd offer, so every session has forward secrecy.
/// </summary>
internal static class PskTlsTransport
{
    /// <summary>
    /// Runs the handshake and returns the stream and the client's PSK identity. A client whose identity the key
    /// file does not name, or whose key differs, fails the handshake (BouncyCastle answers with an alert).
    /// </summary>
    public static async Task<NbdTlsSession> AcceptAsync(
        Socket socket, PskKeyFile keys, CancellationToken ct)
    {
        var transport = new TlsSocketStream(socket);
        var protocol = new TlsServerProtocol(transport);
        var identities = new IdentityManager(keys);
        var server = new Server(new BcTlsCrypto(new SecureRandom()), identities);
        // BouncyCastle's handshake is blocking; a timeout or a stop closes the socket under it, which ends it.
        await using (ct.Register(static s => ((Socket)s!).Dispose(), socket))
        {
            try
            {
                await Task.Run(() => protocol.Accept(server), ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
            {
                // A timeout or a stop closed the socket under the handshake: report it as the cancellation it was.
                ct.ThrowIfCancellationRequested();
                throw new NbdProtocolException($"TLS-PSK handshake failed: {e.Message}");
            }
        }
        transport.BufferWrites = true;
        return new NbdTlsSession(
            new Transport(protocol, transport, socket),
            identities.Chosen,
            $"TLS 1.2 {CipherSuiteName(server.NegotiatedCipherSuite)}");
    }

    /// <summary>The name of one of the suites <see cref="Server"/> offers, for logs.</summary>
    private static string CipherSuiteName(int suite) => suite switch
    {
        CipherSuite.TLS_DHE_PSK_WITH_AES_128_GCM_SHA256 => "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256",
        CipherSuite.TLS_DHE_PSK_WITH_AES_256_GCM_SHA384 => "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
        CipherSuite.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 => "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite.TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256 => "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 => "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
        CipherSuite.TLS_DHE_PSK_WITH_AES_128_CBC_SHA256 => "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256",
        _ => $"0x{suite:x4}",
    };

    /// <summary>
    /// BouncyCastle's PSK server with AES-GCM first: its AES-GCM runs about six times as fast as its
    /// ChaCha20-Poly1305 (measured here, 16 KiB records), which its default order puts first. Only suites with an
    /// ephemeral (EC)DH exchange, for forward secrecy; the server's order decides.
    /// </summary>
    private sealed class Server(BcTlsCrypto crypto, TlsPskIdentityManager identities) : PskTlsServer(crypto, identities)
    {
        private static readonly int[] Preferred =
        [
            CipherSuite.TLS_DHE_PSK_WITH_AES_128_GCM_SHA256,
            CipherSuite.TLS_DHE_PSK_WITH_AES_256_GCM_SHA384,
            CipherSuite.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuite.TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
            CipherSuite.TLS_DHE_PSK_WITH_AES_128_CBC_SHA256,
        ];

        protected override int[] GetSupportedCipherSuites() => TlsUtilities.GetSupportedCipherSuites(Crypto, Preferred);

        protected override bool PreferLocalCipherSuites() => true;

        /// <summary>The suite the handshake chose (valid once it has completed).</summary>
        public int NegotiatedCipherSuite => m_context.SecurityParameters.CipherSuite;
    }

    private sealed class IdentityManager(PskKeyFile keys) : TlsPskIdentityManager
    {
        /// <summary>The identity the client chose, once it has been found in the key file.</summary>
        public string? Chosen { get; private set; }

        public byte[]? GetHint() => null;

        public byte[]? GetPsk(byte[] identity)
        {
            var name = Encoding.UTF8.GetString(identity);
            var key = keys.KeyOf(name);
            if (key is null)
            {
                return null;
            }
            Chosen = name;
            // A copy: BouncyCastle wipes the key it is given once the handshake has used it.
            return (byte[])key.Clone();
        }
    }

    /// <summary>
    /// The session as a <see cref="Stream"/> for <see cref="NbdConnection"/>: one reader and one writer at a time,
    /// concurrently (BouncyCastle serializes record writes under its own lock; reads touch only read state).
    /// </summary>
    private sealed class Transport(TlsServerProtocol protocol, TlsSocketStream transport, Socket socket) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            if (buffer.IsEmpty)
            {
                return 0;
            }
            if (protocol.ApplicationDataAvailable == 0 && transport.BufferedReadBytes == 0)
            {
                // Wait without a thread until the socket has bytes (a zero-byte receive); the blocking read below
                // then waits at most for the rest of a record that has begun to arrive.
                await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, ct).ConfigureAwait(false);
            }
            return Read(buffer.Span);
        }

        public override int Read(Span<byte> buffer)
        {
            try
            {
                var n = protocol.ReadApplicationData(buffer);
                return n < 0 ? 0 : n;
            }
            catch (EndOfStreamException)
            {
                // The client closed the socket without a close_notify: the same end of stream as in plain text.
                return 0;
            }
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
        {
            // Encryption is CPU work and the socket send blocks only when the client stops reading. The records wait
            // in the transport until the connection flushes after its batch of replies.
            protocol.WriteApplicationData(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct)
            => WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

        public override void Write(byte[] buffer, int offset, int count)
            => protocol.WriteApplicationData(buffer.AsSpan(offset, count));

        public override void Flush() => transport.Flush();

        public override Task FlushAsync(CancellationToken ct) => transport.FlushAsync(ct);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                try
                {
                    protocol.Close();
                    transport.Flush();
                }
                catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
                {
                }
            }
            base.Dispose(disposing);
        }
    }
}
