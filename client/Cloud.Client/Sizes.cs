using System.Globalization;

namespace Cloud.Client;

/// <summary>Parses and prints byte sizes with binary suffixes: 4096, 64KiB, 1GiB, 64K, 1M, 2G, 1T.</summary>
public static class Sizes
{
    private static readonly (string Suffix, long Factor)[] Suffixes =
    [
        ("TiB", 1L << 40), ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10),
        ("T", 1L << 40), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10), ("B", 1),
    ];

    /// <summary>
    /// Parses a size; throws <see cref="FormatException"/> naming the bad text and the allowed forms.
    /// </summary>
    public static long Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var t = text.Trim();
        long factor = 1;
        foreach (var (suffix, f) in Suffixes)
        {
            if (t.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                t = t[..^suffix.Length];
                factor = f;
                break;
            }
        }
        if (!long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < 0)
            throw new FormatException(
                $"size '{text}' is not valid; use a whole number of bytes, optionally with KiB, MiB, GiB, TiB (or K, M, G, T)");
        try
        {
            return checked(value * factor);
        }
        catch (OverflowException)
        {
            throw new FormatException($"size '{text}' is too large");
        }
    }

    /// <summary>
    /// Formats a size with the largest binary suffix that divides it evenly (for round numbers) or one decimal.
    /// </summary>
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        var unit = 0;
        while (value >= 1024 && unit < units.Length - 1) { value /= 1024; unit++; }
        return value == Math.Floor(value)
            ? string.Create(CultureInfo.InvariantCulture, $"{value:0}{units[unit]}")
            : string.Create(CultureInfo.InvariantCulture, $"{value:0.0}{units[unit]}");
    }
}
