namespace Cloud.Nbd;

/// <summary>One grant: <see cref="Identity"/> may use volume <see cref="Volume"/>, read-only or read-write.</summary>
/// <param name="Identity">A PSK identity or a client certificate's common name.</param>
/// <param name="Volume">The volume (export) name.</param>
/// <param name="ReadOnly">True for reads only.</param>
public readonly record struct NbdGrantEntry(string Identity, string Volume, bool ReadOnly);

/// <summary>
/// The NBD access rule over a set of grants. A volume without any grant is open to every client, with or without an
/// identity (so a service that has granted nothing behaves as before access lists existed); once a volume has a
/// grant, only the identities granted may see and open it, with the access granted, and a client without an
/// identity (no TLS, or x509 without client certificates) may not. A read-write grant wins over a read-only one.
/// </summary>
public sealed class NbdAccessList
{
    /// <summary>The list with no grants: every volume open to everyone.</summary>
    public static readonly NbdAccessList Open = new([]);

    private readonly Dictionary<string, Dictionary<string, bool>> _byVolume = new(StringComparer.Ordinal);

    /// <summary>Builds the rule over <paramref name="grants"/>.</summary>
    public NbdAccessList(IEnumerable<NbdGrantEntry> grants)
    {
        ArgumentNullException.ThrowIfNull(grants);
        foreach (var g in grants)
        {
            if (!_byVolume.TryGetValue(g.Volume, out var identities))
            {
                _byVolume[g.Volume] = identities = new(StringComparer.Ordinal);
            }
            identities[g.Identity] = identities.TryGetValue(g.Identity, out var readOnly)
                ? readOnly && g.ReadOnly
                : g.ReadOnly;
        }
    }

    /// <summary>What <paramref name="identity"/> (null: none) may do with <paramref name="volume"/>.</summary>
    public NbdAccess AccessOf(string volume, string? identity)
    {
        if (!_byVolume.TryGetValue(volume, out var identities))
        {
            return NbdAccess.ReadWrite;
        }
        if (identity is null || !identities.TryGetValue(identity, out var readOnly))
        {
            return NbdAccess.None;
        }
        return readOnly ? NbdAccess.ReadOnly : NbdAccess.ReadWrite;
    }

    /// <summary>The names among <paramref name="volumes"/> that <paramref name="identity"/> may open, in order.</summary>
    public IReadOnlyList<string> Visible(IEnumerable<string> volumes, string? identity)
        => [.. volumes.Where(v => AccessOf(v, identity) != NbdAccess.None)];
}
