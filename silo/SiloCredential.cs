using Azure.Core;
using Azure.Identity;

namespace Cloud.Silo;

/// <summary>
/// The Entra credential of the silo's host: PostgreSQL sign-in (<see cref="PostgresSignIn.ManagedIdentity"/>) and
/// page blobs at <c>PageBlobs:ServiceUri</c> take their tokens from it.
/// </summary>
public static class SiloCredential
{
    /// <summary>The variable that names the user-assigned managed identity by its client id.</summary>
    public const string ClientIdVariable = "AZURE_CLIENT_ID";

    /// <summary>
    /// With <see cref="ClientIdVariable"/> set: that user-assigned managed identity, and nothing else, so a host
    /// without it fails at once instead of trying a developer's sign-in. Without it: <c>DefaultAzureCredential</c>,
    /// which finds a system-assigned identity in Azure and <c>az login</c> on a developer machine.
    /// </summary>
    public static TokenCredential Create(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        return environment(ClientIdVariable) is { Length: > 0 } clientId
            ? new ManagedIdentityCredential(ManagedIdentityId.FromUserAssignedClientId(clientId))
            : new DefaultAzureCredential();
    }

    /// <summary>Names the identity for error messages (the client id is not a secret).</summary>
    public static string Describe(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        return environment(ClientIdVariable) is { Length: > 0 } clientId
            ? $"the managed identity {ClientIdVariable}={clientId}"
            : $"the host's default Azure credential ({ClientIdVariable} is not set)";
    }
}
