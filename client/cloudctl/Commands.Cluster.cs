using System.CommandLine;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Hosting.Postgres;

namespace Cloud.Cli;

/// <summary>How cloudctl finds the cluster (a gateway, or PostgreSQL clustering) and the <c>db</c> commands.</summary>
internal static partial class Commands
{
    private static readonly Option<string> Clustering = new("--clustering")
    {
        Description = "How to find the silos: localhost (the --gateway) or postgres (the membership table behind --connection). Default: $CLOUD_CLUSTERING, $Cloud__Clustering or localhost",
        Recursive = true,
        DefaultValueFactory = _ => FromEnvironment("CLOUD_CLUSTERING", "Cloud__Clustering") ?? "localhost",
    };

    private static readonly Option<string?> Connection = new("--connection")
    {
        Description =
            "The clustering database's PostgreSQL connection string (default: $CLOUD_CONNECTION or $Cloud__Connection)",
        // No DefaultValueFactory: help would print the default, and a connection string may hold a password.
        Recursive = true,
    };

    private static string? ConnectionOf(ParseResult p)
        => p.GetValue(Connection) ?? FromEnvironment("CLOUD_CONNECTION", "Cloud__Connection");

    private static readonly Option<string> ClusterId = new("--cluster-id")
    {
        Description = "The cluster id the silos use (default: $CLOUD_CLUSTER_ID or cloud)",
        Recursive = true,
        DefaultValueFactory = _ => FromEnvironment("CLOUD_CLUSTER_ID", "Orleans__ClusterId") ?? "cloud",
    };

    // The client's TLS identity. No DefaultValueFactory: the environment is read when connecting (ClientCertificates),
    // so that help shows the variables' names and never a path or value from this machine.
    private static readonly Option<string?> TlsCertificate = new("--tls-cert")
    {
        Description = $"The client certificate (PEM) for a cluster that speaks TLS (default: ${ClusterCertificates.CertificateVariable})",
        Recursive = true,
    };

    private static readonly Option<string?> TlsKey = new("--tls-key")
    {
        Description = $"The client certificate's private key (PEM; default: ${ClusterCertificates.KeyVariable})",
        Recursive = true,
    };

    private static readonly Option<string?> TlsAuthority = new("--tls-ca")
    {
        Description = $"The cluster's certificate authority (PEM) the gateways' certificates must chain to (default: ${ClusterCertificates.AuthorityVariable})",
        Recursive = true,
    };

    /// <summary>
    /// The client certificates the options (or else the environment) name, or null for plaintext; a partial or
    /// unusable set throws <see cref="ClusterCertificateException"/> with one line.
    /// </summary>
    private static ClusterCertificates? ClientCertificates(ParseResult p) => ClusterCertificates.FromFiles(
        p.GetValue(TlsCertificate) ?? FromEnvironment(ClusterCertificates.CertificateVariable),
        p.GetValue(TlsKey) ?? FromEnvironment(ClusterCertificates.KeyVariable),
        p.GetValue(TlsAuthority) ?? FromEnvironment(ClusterCertificates.AuthorityVariable));

    private static string? FromEnvironment(params string[] names) =>
        names.Select(Environment.GetEnvironmentVariable).FirstOrDefault(v => !string.IsNullOrEmpty(v));

    private static void AddClusterOptions(RootCommand root)
    {
        Clustering.Validators.Add(r =>
        {
            var value = r.Tokens.Count == 0 ? r.GetValueOrDefault<string>() : r.Tokens[0].Value;
            if (value is not ("localhost" or "postgres"))
                r.AddError($"--clustering '{value}' is not allowed; use localhost or postgres");
        });
        root.Options.Add(Clustering);
        root.Options.Add(Connection);
        root.Options.Add(ClusterId);
        root.Options.Add(TlsCertificate);
        root.Options.Add(TlsKey);
        root.Options.Add(TlsAuthority);
    }

    /// <summary>
    /// Bad usage that the parser cannot see (it runs a root command's validators only when the root itself is invoked):
    /// postgres clustering without a connection string. Null when the options agree.
    /// </summary>
    public static string? ClusterUsageError(ParseResult p) =>
        p.GetValue(Clustering) == "postgres" && string.IsNullOrWhiteSpace(ConnectionOf(p))
            ? "--clustering postgres needs --connection with a PostgreSQL connection string (or $CLOUD_CONNECTION)"
            : null;

    /// <summary>Connects the way the options say, over TLS when a client certificate is given.</summary>
    private static Task<CloudClient> ConnectAsync(ParseResult p, ClusterCertificates? tls)
    {
        if (p.GetValue(Clustering) == "postgres")
        {
            var connection = ConnectionOf(p);
            if (string.IsNullOrWhiteSpace(connection))
                throw new CloudRequestException(
                    "--clustering postgres needs --connection with a PostgreSQL connection string (or $CLOUD_CONNECTION)");
            return CloudClient.ConnectPostgresAsync(connection, p.GetValue(ClusterId)!, p.GetValue(ClusterId)!, tls);
        }
        return CloudClient.ConnectAsync(p.GetValue(Gateway)!, p.GetValue(ClusterId)!, p.GetValue(ClusterId)!, tls);
    }

    private static Command DbCommand()
    {
        var db = new Command("db", "The clustering database");
        var init = new Command(
            "init", "Create or update Cloud's schema (tables, functions, Orleans queries); safe to run again");
        init.SetAction(async (p, ct) =>
        {
            var connection = ConnectionOf(p);
            if (string.IsNullOrWhiteSpace(connection))
            {
                Console.Error.WriteLine(
                    "cloudctl: db init needs --connection with a PostgreSQL connection string (or $CLOUD_CONNECTION)");
                return ExitCodes.Usage;
            }
            try
            {
                await PostgresSchema.ApplyAsync(connection, ct);
                Print(
                    p,
                    new { applied = true },
                    () => Console.WriteLine("schema applied (idempotent: running it again changes nothing)"));
                return ExitCodes.Ok;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Console.Error.WriteLine($"cloudctl: db init failed: {ex.Message.ReplaceLineEndings(" ")}");
                return ExitCodes.Failed;
            }
        });
        db.Subcommands.Add(init);
        return db;
    }
}
