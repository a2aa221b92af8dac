using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;

namespace Cloud.Client;

/// <summary>Who is on the other end of a TLS connection, which decides the key usage its certificate must allow.</summary>
public enum ClusterPeer
{
    /// <summary>
    /// A silo (silo-to-silo links, and a gateway as seen by a client): its certificate must allow server
    /// authentication (EKU 1.3.6.1.5.5.7.3.1), which a client certificate does not, so a client cannot pose as a silo.
    /// </summary>
    Silo,

    /// <summary>A client of a gateway: its certificate must allow client authentication (EKU 1.3.6.1.5.5.7.3.2).</summary>
    Client,
}

/// <summary>
/// The TLS identity of a silo or a client of a Cloud cluster: its own certificate with the private key, and the
/// certificate authority (or authorities) every peer's certificate must chain to. Both ends present a certificate
/// (mutual TLS); a peer is trusted when its certificate chains to one of <see cref="Authorities"/> alone, not to the
/// machine's trusted roots, so a certificate any public CA issued does not open the cluster.
/// </summary>
/// <remarks>
/// Host names are not checked: silos dial each other by the IP address in the membership table, and the cluster
/// authority issues certificates to silos and clients only, so holding one is what admits a peer. See docs/SECURITY.md.
/// </remarks>
public sealed class ClusterCertificates : IDisposable
{
    /// <summary>The server authentication key usage, which silo certificates carry.</summary>
    public const string ServerAuthenticationOid = "1.3.6.1.5.5.7.3.1";

    /// <summary>The client authentication key usage, which client (and silo) certificates carry.</summary>
    public const string ClientAuthenticationOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>The variable the SDK and cloudctl read the certificate file from (PEM).</summary>
    public const string CertificateVariable = "CLOUD_TLS_CERT";

    /// <summary>The variable the SDK and cloudctl read the private key file from (PEM).</summary>
    public const string KeyVariable = "CLOUD_TLS_KEY";

    /// <summary>The variable the SDK and cloudctl read the cluster authority file from (PEM).</summary>
    public const string AuthorityVariable = "CLOUD_TLS_CA";

    /// <summary>Default for how long a TLS handshake may take before the connection is dropped.</summary>
    public static readonly TimeSpan DefaultHandshakeTimeout = TimeSpan.FromSeconds(10);

    private ClusterCertificates(X509Certificate2 certificate, X509Certificate2Collection authorities)
    {
        Certificate = certificate;
        Authorities = authorities;
    }

    /// <summary>This end's certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The authorities a peer's certificate must chain to.</summary>
    public X509Certificate2Collection Authorities { get; }

    /// <summary>
    /// Loads a certificate and its private key from PEM files and the authority from a third. The names in messages
    /// are the switches <c>--tls-cert</c>, <c>--tls-key</c> and <c>--tls-ca</c>, which silo and cloudctl share.
    /// </summary>
    /// <exception cref="ClusterCertificateException">
    /// A file is missing or unreadable, is not PEM, the key is not the certificate's, the certificate has expired or is
    /// not yet valid, or it does not chain to the authority. The message is one line and holds no key material.
    /// </exception>
    public static ClusterCertificates FromPemFiles(string certificateFile, string keyFile, string authorityFile)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(certificateFile);
        ArgumentException.ThrowIfNullOrWhiteSpace(keyFile);
        var authorities = LoadAuthorities(authorityFile);
        RequireReadable("--tls-cert", certificateFile);
        RequireReadable("--tls-key", keyFile);
        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        }
        catch (CryptographicException ex)
        {
            // The message of a failed PEM import names the problem (no PEM block, a key of another certificate), never
            // the key's bytes.
            throw new ClusterCertificateException(
                $"--tls-cert {certificateFile} with --tls-key {keyFile}: {OneLine(ex.Message)}; give a PEM certificate and the PEM private key it was issued for",
                ex);
        }
        catch (ArgumentException ex)
        {
            throw new ClusterCertificateException(
                $"--tls-cert {certificateFile} with --tls-key {keyFile}: {OneLine(ex.Message)}; give a PEM certificate and the PEM private key it was issued for",
                ex);
        }
        return Checked(certificate, authorities, $"--tls-cert {certificateFile}");
    }

    /// <summary>
    /// Loads the certificate with <paramref name="thumbprint"/> (and its private key) from the platform store (the
    /// current user's, then the machine's "My" store) and the authority from a PEM file.
    /// </summary>
    /// <exception cref="ClusterCertificateException">No such certificate with a private key, or as for
    /// <see cref="FromPemFiles"/>.</exception>
    public static ClusterCertificates FromStore(string thumbprint, string authorityFile, string setting = "Silo:Tls:StoreThumbprint")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(thumbprint);
        var authorities = LoadAuthorities(authorityFile);
        foreach (var location in (StoreLocation[])[StoreLocation.CurrentUser, StoreLocation.LocalMachine])
        {
            using var store = new X509Store(StoreName.My, location);
            try
            {
                store.Open(OpenFlags.ReadOnly | OpenFlags.OpenExistingOnly);
            }
            catch (CryptographicException)
            {
                continue; // A store that does not exist holds no certificate.
            }
            var found = store.Certificates.Find(X509FindType.FindByThumbprint, thumbprint, validOnly: false);
            var withKey = found.FirstOrDefault(c => c.HasPrivateKey);
            if (withKey is not null) return Checked(withKey, authorities, $"{setting} {thumbprint}");
        }
        throw new ClusterCertificateException(
            $"{setting} {thumbprint}: no certificate with that thumbprint and a private key in the CurrentUser or LocalMachine 'My' store; import it there, or give --tls-cert FILE --tls-key FILE");
    }

    /// <summary>
    /// The client's certificates from <see cref="CertificateVariable"/>, <see cref="KeyVariable"/> and
    /// <see cref="AuthorityVariable"/>, or null when none of them is set.
    /// </summary>
    /// <exception cref="ClusterCertificateException">Only some are set, or as for <see cref="FromPemFiles"/>.</exception>
    public static ClusterCertificates? FromEnvironment(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        return FromFiles(environment(CertificateVariable), environment(KeyVariable), environment(AuthorityVariable));
    }

    /// <summary>
    /// Loads the three PEM files when all are given, returns null when none is, and refuses a partial set in one line.
    /// </summary>
    /// <exception cref="ClusterCertificateException">Some but not all are given, or as for
    /// <see cref="FromPemFiles"/>.</exception>
    public static ClusterCertificates? FromFiles(string? certificateFile, string? keyFile, string? authorityFile)
    {
        var given = new[] { certificateFile, keyFile, authorityFile }.Count(f => !string.IsNullOrWhiteSpace(f));
        if (given == 0) return null;
        if (given < 3)
            throw new ClusterCertificateException(
                $"TLS needs all of --tls-cert, --tls-key and --tls-ca (or ${CertificateVariable}, ${KeyVariable}, ${AuthorityVariable}); missing: {string.Join(", ", Missing(certificateFile, keyFile, authorityFile))}");
        return FromPemFiles(certificateFile!, keyFile!, authorityFile!);
    }

    /// <summary>
    /// Whether <paramref name="peer"/> chains to one of <see cref="Authorities"/> (alone, not the machine's roots),
    /// is within its validity period, and allows the key usage <paramref name="role"/> needs. Intermediate
    /// certificates the peer sent (<paramref name="presented"/>) may complete the chain but are not trusted themselves.
    /// </summary>
    public bool Trusts(X509Certificate2 peer, ClusterPeer role, X509Chain? presented = null)
    {
        ArgumentNullException.ThrowIfNull(peer);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Authorities);
        // A private cluster authority publishes no revocation list; rotation replaces the authority instead
        // (docs/SECURITY.md).
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(
            new Oid(role == ClusterPeer.Silo ? ServerAuthenticationOid : ClientAuthenticationOid));
        if (presented is not null)
        {
            foreach (var element in presented.ChainElements)
            {
                if (!element.Certificate.Equals(peer)) chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }
        return chain.Build(peer);
    }

    /// <summary>
    /// Orleans TLS options for connections whose other end is a <paramref name="peer"/>: this end presents
    /// <see cref="Certificate"/>, the other end must present one (mutual TLS), and it must pass <see cref="Trusts"/>.
    /// Platform policy errors (an unknown root, a name that is not the IP address dialled) are not consulted: the
    /// chain is built again against the cluster authority alone.
    /// </summary>
    public TlsOptions CreateTlsOptions(ClusterPeer peer)
    {
        var options = new TlsOptions();
        Configure(options, peer);
        return options;
    }

    /// <summary>Sets Orleans' <paramref name="options"/> as <see cref="CreateTlsOptions"/> describes (for <c>UseTls</c>).</summary>
    public void Configure(TlsOptions options, ClusterPeer peer)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.LocalCertificate = Certificate;
        options.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.HandshakeTimeout = DefaultHandshakeTimeout;
        options.RemoteCertificateValidation = (certificate, chain, errors) =>
            (errors & SslPolicyErrors.RemoteCertificateNotAvailable) == 0 && Trusts(certificate, peer, chain);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Certificate.Dispose();
        foreach (var authority in Authorities) authority.Dispose();
    }

    private static X509Certificate2Collection LoadAuthorities(string authorityFile)
    {
        if (string.IsNullOrWhiteSpace(authorityFile))
            throw new ClusterCertificateException(
                "--tls-ca is missing; give the PEM file of the cluster's certificate authority, which every peer's certificate must chain to");
        RequireReadable("--tls-ca", authorityFile);
        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPemFile(authorityFile);
        }
        catch (CryptographicException ex)
        {
            throw new ClusterCertificateException(
                $"--tls-ca {authorityFile}: {OneLine(ex.Message)}; give the PEM certificate of the cluster's authority", ex);
        }
        if (authorities.Count == 0)
            throw new ClusterCertificateException(
                $"--tls-ca {authorityFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the cluster authority's certificate");
        return authorities;
    }

    private static ClusterCertificates Checked(
        X509Certificate2 certificate,
        X509Certificate2Collection authorities,
        string what)
    {
        var now = DateTime.Now;
        string? problem = null;
        if (!certificate.HasPrivateKey)
            problem = "has no private key";
        else if (certificate.NotAfter < now)
            problem = $"expired on {certificate.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC; issue a new one (docs/SECURITY.md, rotation)";
        else if (certificate.NotBefore > now)
            problem = $"is not valid before {certificate.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm} UTC";
        var identity = new ClusterCertificates(certificate, authorities);
        if (problem is null && !identity.Trusts(certificate, ClusterPeer.Client)
            && !identity.Trusts(certificate, ClusterPeer.Silo))
            problem = "does not chain to --tls-ca (or its key usage allows neither client nor server authentication); give a certificate the cluster's authority issued";
        if (problem is null) return identity;
        identity.Dispose();
        throw new ClusterCertificateException($"{what} {problem}");
    }

    private static void RequireReadable(string option, string file)
    {
        try
        {
            using var stream = File.OpenRead(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            var reason = ex switch
            {
                FileNotFoundException or DirectoryNotFoundException => "no such file",
                UnauthorizedAccessException => "not readable by this user",
                _ => OneLine(ex.Message),
            };
            throw new ClusterCertificateException($"{option} {file}: {reason}; give a readable PEM file", ex);
        }
    }

    private static IEnumerable<string> Missing(string? certificate, string? key, string? authority)
    {
        if (string.IsNullOrWhiteSpace(certificate)) yield return "--tls-cert";
        if (string.IsNullOrWhiteSpace(key)) yield return "--tls-key";
        if (string.IsNullOrWhiteSpace(authority)) yield return "--tls-ca";
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").TrimEnd('.', ' ');
}

/// <summary>
/// A certificate, key or authority that cannot be used; the message is one line that names the setting, the file and
/// what is allowed, and never holds key material.
/// </summary>
public sealed class ClusterCertificateException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ClusterCertificateException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with its cause.</summary>
    public ClusterCertificateException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
