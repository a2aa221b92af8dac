using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Cloud.Nbd;

/// <summary>
/// The server's TLS credentials, loaded once at start: an x509 certificate (served by .NET's
/// <see cref="SslStream"/>, OpenSSL underneath) or a TLS-PSK key file (served by BouncyCastle, see
/// <see cref="PskTlsTransport"/>), and what a client's identity is under each.
/// </summary>
internal abstract class NbdTlsCredentials
{
    /// <summary>"x509" or "psk", for logs.</summary>
    public abstract string Kind { get; }

    /// <summary>
    /// Runs the TLS handshake as the server over <paramref name="socket"/> (right after the STARTTLS ACK) and returns
    /// the session: the encrypted stream, the client's identity and the negotiated cipher suite.
    /// </summary>
    public abstract Task<NbdTlsSession> AcceptAsync(Socket socket, CancellationToken ct);

    /// <summary>
    /// Loads what <paramref name="options"/> names, or returns null and one line saying what is wrong; null and no
    /// error when TLS is off.
    /// </summary>
    public static NbdTlsCredentials? TryLoad(NbdServerOptions options, out string? error)
    {
        error = null;
        if (options.Tls == NbdTlsMode.Off)
        {
            return null;
        }
        if (!string.IsNullOrEmpty(options.TlsPskPath))
        {
            var keys = PskKeyFile.TryLoad(options.TlsPskPath, out error);
            return keys is null ? null : new PskCredentials(keys);
        }
        if (string.IsNullOrEmpty(options.TlsCertificatePath) || string.IsNullOrEmpty(options.TlsKeyPath))
        {
            error = "NBD TLS needs --nbd-tls-cert and --nbd-tls-key, or --nbd-tls-psk";
            return null;
        }
        return X509Credentials.TryLoadX509(options, out error);
    }

    private sealed class PskCredentials(PskKeyFile keys) : NbdTlsCredentials
    {
        public override string Kind => "psk";

        public override Task<NbdTlsSession> AcceptAsync(Socket socket, CancellationToken ct)
            => PskTlsTransport.AcceptAsync(socket, keys, ct);
    }

    private sealed class X509Credentials(SslStreamCertificateContext certificate, X509Certificate2Collection? clientCa)
        : NbdTlsCredentials
    {
        public override string Kind => "x509";

        /// <summary>
        /// The AEAD suites, cheapest first on a CPU with AES instructions (measured on the development machine, 16 KiB
        /// records, one core: OpenSSL's AES-128-GCM 3.9 GB/s, AES-256-GCM 2.8 GB/s; gnutls, the client in qemu and
        /// libnbd, AES-128-GCM 4.6 GB/s but ChaCha20-Poly1305 0.3 GB/s). NBD moves bulk data, so the cipher is most of
        /// what TLS costs on both ends. With a policy the server's order decides: gnutls offers AES-256-GCM first and
        /// without one got it. Clients that offer only AES-256 or ChaCha20 still connect. Null (the system's policy)
        /// on Windows, where SChannel takes no policy.
        /// </summary>
        private static readonly CipherSuitesPolicy? BulkCipherSuites = OperatingSystem.IsWindows() ? null : new(
        [
            TlsCipherSuite.TLS_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_AES_256_GCM_SHA384,
            TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TlsCipherSuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]);

        public static X509Credentials? TryLoadX509(NbdServerOptions options, out string? error)
        {
            error = null;
            X509Certificate2 leaf;
            var chain = new X509Certificate2Collection();
            try
            {
                leaf = X509Certificate2.CreateFromPemFile(options.TlsCertificatePath!, options.TlsKeyPath);
                chain.ImportFromPemFile(options.TlsCertificatePath!);
            }
            catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
            {
                error =
                    $"--nbd-tls-cert '{options.TlsCertificatePath}' with --nbd-tls-key '{options.TlsKeyPath}' cannot be loaded ({e.Message.TrimEnd('.')}); allowed: a PEM certificate and its PEM private key";
                return null;
            }
            if (!leaf.HasPrivateKey)
            {
                error = $"--nbd-tls-key '{options.TlsKeyPath}' holds no private key for the certificate";
                return null;
            }
            // The leaf is the first certificate of the file; the rest is the chain sent to clients.
            var intermediates = new X509Certificate2Collection();
            foreach (var c in chain)
            {
                if (c.Thumbprint != leaf.Thumbprint)
                {
                    intermediates.Add(c);
                }
            }
            X509Certificate2Collection? ca = null;
            if (!string.IsNullOrEmpty(options.TlsCaPath))
            {
                ca = [];
                try
                {
                    ca.ImportFromPemFile(options.TlsCaPath);
                }
                catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
                {
                    error = $"--nbd-tls-ca '{options.TlsCaPath}' cannot be loaded ({e.Message.TrimEnd('.')}); allowed: PEM CA certificates";
                    return null;
                }
                if (ca.Count == 0)
                {
                    error = $"--nbd-tls-ca '{options.TlsCaPath}' holds no certificate; allowed: PEM CA certificates";
                    return null;
                }
            }
            var context = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
            return new X509Credentials(context, ca);
        }

        public override async Task<NbdTlsSession> AcceptAsync(Socket socket, CancellationToken ct)
        {
            var transport = new TlsSocketStream(socket);
            var ssl = new SslStream(transport, leaveInnerStreamOpen: false);
            try
            {
                await ssl.AuthenticateAsServerAsync(
                    new SslServerAuthenticationOptions
                    {
                        ServerCertificateContext = certificate,
                        ClientCertificateRequired = clientCa is not null,
                        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                        RemoteCertificateValidationCallback = (_, presented, _, _) => IsTrusted(presented),
                        CipherSuitesPolicy = BulkCipherSuites,
                    },
                    ct).ConfigureAwait(false);
            }
            catch (AuthenticationException e)
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw new NbdProtocolException($"TLS handshake failed: {e.Message}");
            }
            catch
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw;
            }
            // From now on records are gathered until the connection flushes (after each batch of replies).
            transport.BufferWrites = true;
            string? identity = null;
            if (clientCa is not null && ssl.RemoteCertificate is X509Certificate2 client)
            {
                identity = client.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            }
            return new NbdTlsSession(ssl, identity, $"{ssl.SslProtocol} {ssl.NegotiatedCipherSuite}");
        }

        /// <summary>
        /// Without a CA no client certificate is asked for (and one offered anyway is ignored); with one, the client's
        /// certificate must chain to it.
        /// </summary>
        private bool IsTrusted(X509Certificate? presented)
        {
            if (clientCa is null)
            {
                return true;
            }
            if (presented is not X509Certificate2 cert)
            {
                return false;
            }
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(clientCa);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return chain.Build(cert);
        }
    }
}

/// <summary>
/// An established TLS session: the encrypted stream, the client's identity (the PSK identity, or the client
/// certificate's common name when client certificates are verified; null when the client has none), and the protocol
/// and cipher suite negotiated (for logs: the cipher is most of what TLS costs on bulk data).
/// </summary>
internal sealed record NbdTlsSession(Stream Stream, string? Identity, string CipherSuite);
