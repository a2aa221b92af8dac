using Cloud.Nbd;
using Cloud.Silo;
using Microsoft.Extensions.Configuration;

namespace Cloud.Infra.Tests;

/// <summary>
/// The contract between <c>infra/</c> and the silo (issue 16): every setting the template gives the silo container is
/// one the silo reads (<see cref="SiloSettings"/>), what the silo needs in Azure is given, the values bind and validate
/// as the silo would bind them, and the probes and ingress ports are the ones the settings open.
/// </summary>
public sealed class DeploymentContractTests
{
    /// <summary>Module parameters as a deployment would give them (names only matter to the expressions).</summary>
    internal static readonly Dictionary<string, string> AzureParameters = new(StringComparer.Ordinal)
    {
        ["siloIdentityClientId"] = "00000000-0000-0000-0000-00000000c11d",
        ["clusterId"] = "cloud",
        ["postgresHost"] = "cloudprod-pg-abc123.postgres.database.azure.com",
        ["postgresDatabase"] = "cloud",
        ["siloIdentityName"] = "cloudprod-silo-id",
        ["blobEndpoint"] = "https://cloudproddisksabc123.blob.core.windows.net/",
        ["disksContainerName"] = "disks",
        ["tlsCertificateReference"] = "https://cloudprod-kv.vault.example/secrets/silo-tls-cert",
        ["tlsKeyReference"] = "https://cloudprod-kv.vault.example/secrets/silo-tls-key",
        ["tlsAuthorityReference"] = "https://cloudprod-kv.vault.example/secrets/cluster-ca",
    };

    [Fact]
    public async Task Template_SetsOnlyKeysTheSiloReads()
    {
        var spec = await SiloContainerSpec.CompileAsync(AzureParameters);

        var unread = UnreadKeys(spec.Environment.Select(e => e.Name));

        Assert.True(
            unread.Count == 0,
            $"infra/modules/silos.bicep gives the silo {string.Join(", ", unread)}, which it does not read; use a key from 'Cloud.Silo --print-settings' (docs/DEPLOY.md) or add the code that reads it");
    }

    [Fact]
    public async Task KeyCheck_FailsNamingAKeyAddedToTheTemplateThatNothingReads()
    {
        var spec = await SiloContainerSpec.CompileAsync(AzureParameters);

        // The keys issue 16 found in the template: set, and read by nothing.
        var unread = UnreadKeys(
            [.. spec.Environment.Select(e => e.Name), "Cloud__Postgres__UseManagedIdentity", "Cloud__Nbd__Port"]);

        Assert.Equal(["Cloud__Postgres__UseManagedIdentity", "Cloud__Nbd__Port"], unread);
    }

    [Fact]
    public async Task Template_GivesWhatTheSiloNeedsInAzure()
    {
        var spec = await SiloContainerSpec.CompileAsync(AzureParameters);

        Assert.Equal(AzureParameters["siloIdentityClientId"], spec[SiloCredential.ClientIdVariable]);
        Assert.Equal("postgres", spec["Silo__Clustering"]);
        Assert.Equal(nameof(PostgresSignIn.ManagedIdentity), spec["Silo__PostgresSignIn"]);
        Assert.DoesNotContain("Password", spec["Silo__Connection"], StringComparison.OrdinalIgnoreCase);
        Assert.Equal(HostAddress.Auto, spec["Silo__Address"]);
        Assert.Equal(AzureParameters["blobEndpoint"], spec["PageBlobs__ServiceUri"]);
        Assert.Equal(AzureParameters["disksContainerName"], spec["PageBlobs__DefaultContainer"]);
    }

    [Fact]
    public async Task Template_GivesTheSiloItsCertificate_AsFilesOfKeyVaultSecrets()
    {
        var spec = await SiloContainerSpec.CompileAsync(AzureParameters);
        var silo = Bind<SiloHostOptions>(spec, SiloHostOptions.SectionName);

        // Silo__Address=auto is not loopback, so TLS would be on anyway; the template says so, and names the files.
        Assert.Equal(TlsMode.On, silo.Tls.Mode);
        string[] files = [silo.Tls.CertificateFile!, silo.Tls.KeyFile!, silo.Tls.AuthorityFile!];
        Assert.Equal(files.Order(StringComparer.Ordinal), spec.SecretFiles.Select(f => f.Path).Order(StringComparer.Ordinal));
        Assert.All(spec.SecretFiles, f => Assert.True(f.FromKeyVault && !f.Inline, $"{f.Path} is not a Key Vault reference"));
        Assert.Null(silo.Tls.StoreThumbprint);
    }

    [Fact]
    public async Task Template_Probes_AndIngress_AreThePortsItsSettingsOpen()
    {
        var spec = await SiloContainerSpec.CompileAsync(AzureParameters);
        var silo = Bind<SiloHostOptions>(spec, SiloHostOptions.SectionName);
        var http = Bind<HttpEndpointOptions>(spec, HttpEndpointOptions.SectionName);
        var nbd = Bind<NbdServerOptions>(spec, SiloEndpoints.NbdSectionName);

        Assert.Equal(
            [("Liveness", "/alive", http.Port), ("Readiness", "/health", http.Port)],
            spec.Probes.Select(p => (p.Type, p.Path, p.Port)));
        Assert.NotEqual(HttpEndpointOptions.Off, http.Port);
        Assert.Equal([nbd.Port, silo.GatewayPort], spec.IngressPorts);
    }

    [Fact]
    public async Task Template_Settings_BindAndPassTheSilosValidators()
    {
        var spec = await SiloContainerSpec.CompileAsync(AzureParameters);

        var silo = Bind<SiloHostOptions>(spec, SiloHostOptions.SectionName);
        Assert.Equal([], new SiloHostOptionsValidator().Validate(null, silo).Failures ?? []);
        Assert.Equal(ClusteringKind.Postgres, silo.Clustering);
        Assert.True(silo.ApplySchema);
        var http = Bind<HttpEndpointOptions>(spec, HttpEndpointOptions.SectionName);
        Assert.Equal([], new HttpEndpointOptionsValidator().Validate(null, http).Failures ?? []);
        var nbd = Bind<NbdServerOptions>(spec, SiloEndpoints.NbdSectionName);
        Assert.Equal([], new NbdServerOptionsValidator().Validate(null, nbd).Failures ?? []);
    }

    /// <summary>The names in <paramref name="names"/> the silo does not read, in their order.</summary>
    internal static List<string> UnreadKeys(IEnumerable<string> names) => [.. names.Where(n => !SiloSettings.Reads(n))];

    private static T Bind<T>(SiloContainerSpec spec, string section) where T : new()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(spec.Environment.Select(
                e => new KeyValuePair<string, string?>(e.Name.Replace("__", ":", StringComparison.Ordinal), e.Value)))
            .Build();
        var options = new T();
        configuration.GetSection(section).Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        return options;
    }
}
