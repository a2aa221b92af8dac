using System.Diagnostics.CodeAnalysis;

namespace Cloud.Storage.Azure;

/// <summary>
/// How the control plane names a member disk, in one line an operator can type:
/// <c>file:PATH</c> (a file or block device the silo can open) or <c>pageblob:CONTAINER/BLOB</c>
/// (a page blob in the storage account the silos are configured with; the blob name may contain '/').
/// The account is not part of the descriptor, so that the same volume definition works with Azurite
/// on a laptop and with a storage account in production.
/// </summary>
public abstract record DiskDescriptor
{
    /// <summary>The prefix of a file disk.</summary>
    public const string FileScheme = "file";

    /// <summary>The prefix of a page-blob disk.</summary>
    public const string PageBlobScheme = "pageblob";

    private protected DiskDescriptor()
    {
    }

    /// <summary>
    /// Parses <c>file:PATH</c> or <c>pageblob:CONTAINER/BLOB</c>; throws <see cref="FormatException"/> naming the text
    /// and the accepted forms.
    /// </summary>
    public static DiskDescriptor Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out DiskDescriptor? descriptor, out var error)
            ? descriptor
            : throw new FormatException(
                $"Disk '{text}' is not valid: {error} Use 'file:PATH' or 'pageblob:CONTAINER/BLOB'.");
    }

    /// <summary>Parses like <see cref="Parse"/>, returning false instead of throwing.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out DiskDescriptor? descriptor)
        => TryParse(text, out descriptor, out _);

    private static bool TryParse(
        string? text,
        [NotNullWhen(true)] out DiskDescriptor? descriptor,
        [NotNullWhen(false)] out string? error)
    {
        descriptor = null;
        var colon = text?.IndexOf(':', StringComparison.Ordinal) ?? -1;
        if (text is null || colon <= 0)
        {
            error = "it has no 'scheme:' prefix.";
            return false;
        }

        var scheme = text[..colon];
        var rest = text[(colon + 1)..];
        if (scheme.Equals(FileScheme, StringComparison.OrdinalIgnoreCase))
        {
            if (rest.Length == 0 || rest.Contains('\0', StringComparison.Ordinal))
            {
                error = "the file path is empty or holds a NUL character.";
                return false;
            }

            descriptor = new FileDisk(rest);
            error = null;
            return true;
        }

        if (scheme.Equals(PageBlobScheme, StringComparison.OrdinalIgnoreCase))
        {
            var slash = rest.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0 || slash == rest.Length - 1)
            {
                error = "a page-blob disk needs both a container and a blob name, separated by '/'.";
                return false;
            }

            var container = rest[..slash];
            var blob = rest[(slash + 1)..];
            try
            {
                PageBlobNames.ValidateContainer(container);
                PageBlobNames.ValidateBlob(blob);
            }
            catch (ArgumentException e)
            {
                error = e.Message.Split(" (Parameter", 2)[0];
                return false;
            }

            descriptor = new PageBlobDisk(container, blob);
            error = null;
            return true;
        }

        error = $"the scheme '{scheme}' is unknown.";
        return false;
    }
}

/// <summary>A disk that is a file or block device at <paramref name="Path"/> on the silo's host.</summary>
public sealed record FileDisk(string Path) : DiskDescriptor
{
    /// <summary>The descriptor text, <c>file:PATH</c>.</summary>
    public override string ToString() => $"{FileScheme}:{Path}";
}

/// <summary>
/// A disk that is the page blob <paramref name="Blob"/> in <paramref name="Container"/> of the configured account.
/// </summary>
public sealed record PageBlobDisk(string Container, string Blob) : DiskDescriptor
{
    /// <summary>The descriptor text, <c>pageblob:CONTAINER/BLOB</c>.</summary>
    public override string ToString() => $"{PageBlobScheme}:{Container}/{Blob}";
}
