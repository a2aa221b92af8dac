using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Cloud.Testing;

/// <summary>
/// TLS keys for tests, made fresh in a directory: a CA, a server certificate for localhost and 127.0.0.1, client
/// certificates for "alice" and "bob", and PSK files made with gnutls' <c>psktool</c>. Files are laid out the way
/// qemu (<c>tls-creds-x509 dir=</c>, <c>tls-creds-psk dir=</c>) and libnbd (<c>tls-certificates=</c>,
/// <c>tls-psk-file=</c>) read them.
/// </summary>
public sealed class TlsTestKeys
{
    private TlsTestKeys(string directory) => Directory = directory;

    /// <summary>Where everything is.</summary>
    public string Directory { get; }

    /// <summary>The CA that signed every certificate.</summary>
    public X509Certificate2 Ca { get; private set; } = null!;

    public string CaPath => Path.Combine(Directory, "server", "ca-cert.pem");

    public string ServerCertificatePath => Path.Combine(Directory, "server", "server-cert.pem");

    public string ServerKeyPath => Path.Combine(Directory, "server", "server-key.pem");

    /// <summary>The server's PSK file: alice and bob.</summary>
    public string ServerPskPath => Path.Combine(Directory, "server", "keys.psk");

    /// <summary>
    /// A client's x509 directory (ca-cert.pem, client-cert.pem, client-key.pem): "alice", "bob", or "anonymous"
    /// (the CA only).
    /// </summary>
    public string X509Dir(string client) => Path.Combine(Directory, "x509-" + client);

    /// <summary>A client's PSK directory holding keys.psk with only its own line ("wrong": alice with another key).</summary>
    public string PskDir(string client) => Path.Combine(Directory, "psk-" + client);

    public string PskFile(string client) => Path.Combine(PskDir(client), "keys.psk");

    /// <summary>A client certificate with its key, for .NET clients.</summary>
    public X509Certificate2 ClientCertificate(string client) =>
        X509Certificate2.CreateFromPemFile(
            Path.Combine(X509Dir(client), "client-cert.pem"), Path.Combine(X509Dir(client), "client-key.pem"));

    public static async Task<TlsTestKeys> CreateAsync(string directory)
    {
        var keys = new TlsTestKeys(directory);
        System.IO.Directory.CreateDirectory(Path.Combine(directory, "server"));
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=Cloud test CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(
            new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        keys.Ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(30));
        await File.WriteAllTextAsync(keys.CaPath, keys.Ca.ExportCertificatePem());

        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        await WriteLeafAsync(keys.Ca, "localhost", san.Build(), "1.3.6.1.5.5.7.3.1", keys.ServerCertificatePath,
            keys.ServerKeyPath);
        foreach (var client in new[] { "alice", "bob" })
        {
            var dir = keys.X509Dir(client);
            System.IO.Directory.CreateDirectory(dir);
            File.Copy(keys.CaPath, Path.Combine(dir, "ca-cert.pem"));
            await WriteLeafAsync(keys.Ca, client, null, "1.3.6.1.5.5.7.3.2", Path.Combine(dir, "client-cert.pem"),
                Path.Combine(dir, "client-key.pem"));
        }
        System.IO.Directory.CreateDirectory(keys.X509Dir("anonymous"));
        File.Copy(keys.CaPath, Path.Combine(keys.X509Dir("anonymous"), "ca-cert.pem"));

        var psktool = Tools.Require("psktool", "gnutls-bin");
        foreach (var client in new[] { "alice", "bob" })
        {
            System.IO.Directory.CreateDirectory(keys.PskDir(client));
            (await Tools.RunAsync(psktool, ["-u", client, "-p", keys.PskFile(client)])).AssertSuccess("psktool");
            await File.AppendAllTextAsync(keys.ServerPskPath, await File.ReadAllTextAsync(keys.PskFile(client)));
        }
        // Alice's name with a key the server does not know.
        System.IO.Directory.CreateDirectory(keys.PskDir("wrong"));
        (await Tools.RunAsync(psktool, ["-u", "alice", "-p", keys.PskFile("wrong")])).AssertSuccess("psktool");
        return keys;
    }

    private static async Task WriteLeafAsync(
        X509Certificate2 ca, string commonName, X509Extension? san, string usage, string certPath, string keyPath)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(
            new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        if (san is not null)
        {
            request.CertificateExtensions.Add(san);
        }
        var now = DateTimeOffset.UtcNow;
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var cert = request.Create(ca, now.AddDays(-1), now.AddDays(29), serial);
        await File.WriteAllTextAsync(certPath, cert.ExportCertificatePem());
        await File.WriteAllTextAsync(keyPath, key.ExportPkcs8PrivateKeyPem());
    }
}
