using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Cloud.Testing;

/// <summary>A certificate and its key as PEM text, and where they were written.</summary>
/// <param name="CertificatePem">The certificate, PEM.</param>
/// <param name="KeyPem">The private key, PKCS#8 PEM.</param>
public sealed record PemPair(string CertificatePem, string KeyPem)
{
    /// <summary>Writes the pair as <c>NAME.crt</c> and <c>NAME.key</c> (mode 0600) in <paramref name="directory"/>.</summary>
    public (string CertificateFile, string KeyFile) WriteTo(string directory, string name)
    {
        var certificate = Path.Combine(directory, name + ".crt");
        var key = Path.Combine(directory, name + ".key");
        File.WriteAllText(certificate, CertificatePem);
        File.WriteAllText(key, "");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(key, KeyPem);
        return (certificate, key);
    }
}

/// <summary>
/// A test certificate authority made in process (System.Security.Cryptography, no openssl): the cluster's CA, silo
/// and client certificates it issues, and whole other authorities for "a certificate of another cluster".
/// </summary>
public sealed class TestCertificates : IDisposable
{
    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    private readonly X509Certificate2 _authority;

    private TestCertificates(X509Certificate2 authority) => _authority = authority;

    /// <summary>The authority's certificate, PEM (what <c>--tls-ca</c> names).</summary>
    public string AuthorityPem => _authority.ExportCertificatePem();

    /// <summary>Makes a new authority (EC P-256, valid for a day) with <paramref name="name"/> as its subject.</summary>
    public static TestCertificates CreateAuthority(string name = "Cloud test cluster CA")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(
            new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return new TestCertificates(request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1)));
    }

    /// <summary>A silo certificate (server and client authentication) named <paramref name="name"/>.</summary>
    public PemPair IssueSilo(string name) => Issue(name, [ServerAuthentication, ClientAuthentication]);

    /// <summary>A client certificate (client authentication only) named <paramref name="name"/>.</summary>
    public PemPair IssueClient(string name) => Issue(name, [ClientAuthentication]);

    /// <summary>Writes the authority as <c>NAME.crt</c> in <paramref name="directory"/> and returns its path.</summary>
    public string WriteAuthority(string directory, string name = "ca")
    {
        var path = Path.Combine(directory, name + ".crt");
        File.WriteAllText(path, AuthorityPem);
        return path;
    }

    /// <inheritdoc />
    public void Dispose() => _authority.Dispose();

    private PemPair Issue(string name, Oid[] usages)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        var collection = new OidCollection();
        foreach (var usage in usages) collection.Add(usage);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(collection, false));
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName(name);
        request.CertificateExtensions.Add(names.Build());
        var now = DateTimeOffset.UtcNow;
        var serial = new byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7f;
        using var issued = request.Create(_authority, now.AddMinutes(-5), now.AddHours(12), serial);
        return new PemPair(issued.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }
}
