using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Cloud.Grains.Disks;

/// <summary>
/// Mutual TLS on the disk stream, with the certificates of the silos' own connections: the silo registers it when its
/// Orleans ports speak TLS (docs/SECURITY.md), and both ends of every stream connection then present this silo's
/// certificate and accept only a peer certificate that the cluster's authority issued to a silo.
/// </summary>
/// <param name="certificate">This silo's certificate, with its private key.</param>
/// <param name="trustsSilo">Whether a peer's certificate (with the chain it presented) is a silo's of this cluster.</param>
public sealed class DiskStreamTls(X509Certificate2 certificate, Func<X509Certificate2, X509Chain?, bool> trustsSilo)
{
    /// <summary>How long a connection's TLS handshake may take.</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The name the client asks for; peers are admitted by their certificate's issuer, not by name.</summary>
    private const string TargetHost = "cloud-silo";

    internal SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificate = certificate,
        ClientCertificateRequired = true,
        RemoteCertificateValidationCallback = Validate,
    };

    internal SslClientAuthenticationOptions ClientOptions() => new()
    {
        TargetHost = TargetHost,
        ClientCertificates = [certificate],
        RemoteCertificateValidationCallback = Validate,
    };

    // Platform errors (an unknown root, a name that is not the address dialled) are not consulted: the chain is built
    // again against the cluster's authority alone. A peer without a certificate is refused.
    private bool Validate(object sender, X509Certificate? peer, X509Chain? chain, SslPolicyErrors errors) =>
        (errors & SslPolicyErrors.RemoteCertificateNotAvailable) == 0
        && peer is X509Certificate2 presented
        && trustsSilo(presented, chain);
}
