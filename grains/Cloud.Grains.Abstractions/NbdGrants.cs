namespace Cloud.Grains.Abstractions;

/// <summary>
/// One NBD access grant, kept with the volume catalog: the client <paramref name="Identity"/> (a TLS-PSK identity or
/// a client certificate's common name) may use volume <paramref name="Volume"/> over NBD, read-only or read-write.
/// Once a volume has any grant, only the identities granted may see and open it (see docs/NBD.md).
/// </summary>
/// <param name="Identity">1-255 printable characters, no ':' (PSK files split identity and key at the first ':').</param>
/// <param name="Volume">An existing volume's name.</param>
/// <param name="ReadOnly">True: reads only; writes and trims fail with EPERM.</param>
[GenerateSerializer, Immutable, Alias("cloud.NbdGrant")]
public sealed record NbdGrant(
    [property: Id(0)] string Identity,
    [property: Id(1)] string Volume,
    [property: Id(2)] bool ReadOnly)
{
    /// <summary>The longest identity accepted, in UTF-8 bytes (what a PSK file line or a certificate CN carries).</summary>
    public const int MaxIdentityBytes = 255;

    /// <summary>Null when <paramref name="identity"/> is acceptable, else what is wrong and what is allowed.</summary>
    public static string? CheckIdentity(string identity)
    {
        if (string.IsNullOrEmpty(identity)
            || System.Text.Encoding.UTF8.GetByteCount(identity) > MaxIdentityBytes
            || identity.Contains(':', StringComparison.Ordinal)
            || identity.Any(char.IsControl)
            || identity.Trim().Length != identity.Length)
        {
            return $"identity '{identity}' is not allowed; use 1-{MaxIdentityBytes} bytes of printable characters without ':' or surrounding spaces (a PSK identity or a certificate's common name)";
        }
        return null;
    }
}
