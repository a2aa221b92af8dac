using System.Globalization;
using System.Text;

namespace Cloud.Nbd;

/// <summary>
/// A TLS-PSK key file as <c>psktool</c> writes it and qemu (<c>tls-creds-psk</c>) and libnbd (<c>tls-psk-file</c>)
/// read it: one <c>identity:hexkey</c> a line. Empty lines and lines starting with <c>#</c> are skipped.
/// </summary>
internal sealed class PskKeyFile
{
    /// <summary>The longest identity TLS carries (RFC 4279: up to 2^16-1 bytes; we keep names short).</summary>
    public const int MaxIdentityBytes = 255;

    /// <summary>The shortest key accepted: 128 bits (psktool makes 256 by default).</summary>
    public const int MinKeyBytes = 16;

    /// <summary>The longest key accepted (RFC 4279 allows up to 2^16-1 bytes; 512 bits is plenty).</summary>
    public const int MaxKeyBytes = 64;

    /// <summary>Identities in one file at most.</summary>
    public const int MaxIdentities = 65536;

    private readonly Dictionary<string, byte[]> _keys;

    private PskKeyFile(Dictionary<string, byte[]> keys) => _keys = keys;

    /// <summary>The identities the file names.</summary>
    public IReadOnlyCollection<string> Identities => _keys.Keys;

    /// <summary>The key of <paramref name="identity"/>, or null when the file does not name it.</summary>
    public byte[]? KeyOf(string identity) => _keys.GetValueOrDefault(identity);

    /// <summary>Reads <paramref name="path"/>, or returns null and one line saying what is wrong and what is allowed.</summary>
    public static PskKeyFile? TryLoad(string path, out string? error)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"PSK file '{path}' cannot be read: {e.Message}";
            return null;
        }
        return TryParse(path, lines, out error);
    }

    /// <summary>Parses the lines of a PSK file; <paramref name="path"/> only names it in errors.</summary>
    public static PskKeyFile? TryParse(string path, IReadOnlyList<string> lines, out string? error)
    {
        var keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        for (var i = 0; i < lines.Count; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            // The key is hex and has no ':', so the last ':' separates it; an identity may not contain one either,
            // because qemu and libnbd split at the first.
            var colon = line.IndexOf(':');
            var where = $"PSK file '{path}' line {i + 1}";
            if (colon <= 0 || colon != line.LastIndexOf(':'))
            {
                error = $"{where} is not 'identity:hexkey'; allowed: one identity (no ':') and its key in hex, as psktool writes";
                return null;
            }
            var identity = line[..colon];
            if (Encoding.UTF8.GetByteCount(identity) > MaxIdentityBytes)
            {
                error = $"{where}: the identity is longer than {MaxIdentityBytes} bytes";
                return null;
            }
            var hex = line[(colon + 1)..];
            if (hex.Length % 2 != 0 || !hex.All(Uri.IsHexDigit))
            {
                error = $"{where}: the key is not hex digits in pairs; allowed: {2 * MinKeyBytes}-{2 * MaxKeyBytes} hex digits";
                return null;
            }
            var key = Convert.FromHexString(hex);
            if (key.Length is < MinKeyBytes or > MaxKeyBytes)
            {
                error = $"{where}: the key is {key.Length} bytes; allowed: {MinKeyBytes}-{MaxKeyBytes} ({2 * MinKeyBytes}-{2 * MaxKeyBytes} hex digits)";
                return null;
            }
            if (!keys.TryAdd(identity, key))
            {
                error = $"{where}: identity '{identity}' is given twice; each identity has one key";
                return null;
            }
            if (keys.Count > MaxIdentities)
            {
                error = $"PSK file '{path}' names more than {MaxIdentities.ToString(CultureInfo.InvariantCulture)} identities";
                return null;
            }
        }
        if (keys.Count == 0)
        {
            error = $"PSK file '{path}' names no identity; allowed: lines 'identity:hexkey' (psktool -u NAME -p FILE writes one)";
            return null;
        }
        error = null;
        return new PskKeyFile(keys);
    }
}
