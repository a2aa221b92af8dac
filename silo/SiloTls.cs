using Microsoft.Extensions.DependencyInjection;
using System.Net;
using Cloud.Client;
using Orleans.Configuration;

namespace Cloud.Silo;

/// <summary>Whether the silo's Orleans ports (silo-to-silo and gateway) speak mutual TLS.</summary>
public enum TlsMode
{
    /// <summary>Plaintext: anyone who reaches the ports can join the cluster and call any grain.</summary>
    Off,
    /// <summary>Mutual TLS: every peer presents a certificate of the cluster's authority.</summary>
    On,
}

/// <summary>
/// The silo's TLS settings (section <c>Silo:Tls</c>): its certificate, from PEM files or the platform store, and the
/// cluster's certificate authority. See docs/SECURITY.md for how to make them.
/// </summary>
public sealed class SiloTlsOptions
{
    /// <summary>
    /// <c>--tls off|on</c>. Unset: on when the silo's address (<c>--address</c>) is not loopback, off on loopback, so
    /// the embedded single-machine run stays plaintext and a silo others can reach does not.
    /// </summary>
    public TlsMode? Mode { get; set; }

    /// <summary><c>--tls-cert FILE</c>: the silo's certificate (PEM), with server and client authentication usage.</summary>
    public string? CertificateFile { get; set; }

    /// <summary><c>--tls-key FILE</c>: the certificate's private key (PEM); readable by the silo's user only.</summary>
    public string? KeyFile { get; set; }

    /// <summary>
    /// The thumbprint of the silo's certificate in the platform store (CurrentUser, then LocalMachine, "My"), instead
    /// of <see cref="CertificateFile"/> and <see cref="KeyFile"/>.
    /// </summary>
    public string? StoreThumbprint { get; set; }

    /// <summary><c>--tls-ca FILE</c>: the cluster's certificate authority (PEM) every peer's certificate must chain to.</summary>
    public string? AuthorityFile { get; set; }

    /// <summary>The mode in effect for a silo on <paramref name="address"/>.</summary>
    public TlsMode EffectiveMode(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return Mode ?? (HostAddress.IsLoopback(address) ? TlsMode.Off : TlsMode.On);
    }
}

/// <summary>Loads the silo's TLS identity and puts it on the Orleans ports.</summary>
public static class SiloTls
{
    /// <summary>
    /// The silo's certificates when TLS is in effect on <paramref name="address"/>, or null for plaintext. Returns null
    /// and sets <paramref name="error"/> to one line (what is wrong, what is allowed) when TLS is on and the
    /// certificate, its key or the authority is missing or unusable; the silo then refuses to start.
    /// </summary>
    public static ClusterCertificates? Load(SiloTlsOptions options, IPAddress address, out string? error)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(address);
        error = null;
        if (options.EffectiveMode(address) == TlsMode.Off) return null;
        var why = options.Mode is null ? $"--address {address} is not loopback, so TLS is on" : "--tls on";
        var files = !string.IsNullOrWhiteSpace(options.CertificateFile) || !string.IsNullOrWhiteSpace(options.KeyFile);
        var store = !string.IsNullOrWhiteSpace(options.StoreThumbprint);
        if (files && store)
        {
            error = $"{why}: give either --tls-cert FILE --tls-key FILE or Silo:Tls:StoreThumbprint, not both";
            return null;
        }
        if (!files && !store)
        {
            error = $"{why} and needs the silo's certificate: give --tls-cert FILE --tls-key FILE (PEM) or Silo:Tls:StoreThumbprint, and --tls-ca FILE (docs/SECURITY.md); --tls off runs plaintext, which anyone who reaches the ports can join";
            return null;
        }
        if (files && (string.IsNullOrWhiteSpace(options.CertificateFile) || string.IsNullOrWhiteSpace(options.KeyFile)))
        {
            error = $"{why}: --tls-cert FILE and --tls-key FILE go together; give both (PEM)";
            return null;
        }
        try
        {
            var certificates = store
                ? ClusterCertificates.FromStore(options.StoreThumbprint!, options.AuthorityFile ?? "")
                : ClusterCertificates.FromPemFiles(options.CertificateFile!, options.KeyFile!, options.AuthorityFile ?? "");
            // A silo's certificate serves its ports and dials other silos, so it needs both key usages.
            if (!certificates.Trusts(certificates.Certificate, ClusterPeer.Silo)
                || !certificates.Trusts(certificates.Certificate, ClusterPeer.Client))
            {
                certificates.Dispose();
                var which = store ? $"Silo:Tls:StoreThumbprint {options.StoreThumbprint}" : $"--tls-cert {options.CertificateFile}";
                error = $"{which} is not a silo certificate: it must allow both server and client authentication (extended key usage serverAuth and clientAuth)";
                return null;
            }
            return certificates;
        }
        catch (ClusterCertificateException ex)
        {
            error = $"{why}: {ex.Message}";
            return null;
        }
    }

    /// <summary>
    /// Mutual TLS on the silo's Orleans ports: on the silo port and on its own connections to other silos only a
    /// silo certificate of the cluster's authority is accepted; on the gateway, a client certificate of it (silo
    /// certificates allow client authentication too). Returns the builder.
    /// </summary>
    public static ISiloBuilder UseCloudTls(this ISiloBuilder builder, ClusterCertificates certificates)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(certificates);
        var silos = certificates.CreateTlsOptions(ClusterPeer.Silo);
        var clients = certificates.CreateTlsOptions(ClusterPeer.Client);
        // The disk service's stream speaks the same mutual TLS, with the same certificates, as the silo port.
        builder.Services.AddSingleton(new Cloud.Grains.Disks.DiskStreamTls(
            certificates.Certificate, (peer, chain) => certificates.Trusts(peer, ClusterPeer.Silo, chain)));
        return builder.Configure<SiloConnectionOptions>(connections =>
        {
            connections.ConfigureSiloInboundConnection(c => c.UseServerTls(silos));
            connections.ConfigureSiloOutboundConnection(c => c.UseClientTls(silos));
            connections.ConfigureGatewayInboundConnection(c => c.UseServerTls(clients));
        });
    }
}
