namespace Cloud.Storage.Azure;

/// <summary>
/// Checks container and blob names before they reach the service, so that a typo in a disk
/// descriptor is refused with a message naming the rule instead of an HTTP 400 after retries.
/// </summary>
public static class PageBlobNames
{
    /// <summary>Shortest container name Azure accepts.</summary>
    public const int MinContainerNameLength = 3;

    /// <summary>Longest container name Azure accepts.</summary>
    public const int MaxContainerNameLength = 63;

    /// <summary>Longest blob name Azure accepts.</summary>
    public const int MaxBlobNameLength = 1024;

    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless <paramref name="container"/> is 3-63 characters of
    /// lowercase letters, digits and single hyphens, starting and ending with a letter or digit.
    /// </summary>
    public static void ValidateContainer(string container)
    {
        ArgumentNullException.ThrowIfNull(container);
        var ok = container.Length is >= MinContainerNameLength and <= MaxContainerNameLength
            && IsLowerAlnum(container[0])
            && IsLowerAlnum(container[^1]);
        for (var i = 0; ok && i < container.Length; i++)
        {
            var c = container[i];
            ok = IsLowerAlnum(c) || (c == '-' && container[i - 1] != '-');
        }

        if (!ok)
        {
            throw new ArgumentException(
                $"Container name '{container}' is not allowed: use {MinContainerNameLength}-{MaxContainerNameLength} lowercase letters, digits and single hyphens, starting and ending with a letter or digit.",
                nameof(container));
        }
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless <paramref name="blob"/> is 1-1024 characters without
    /// control characters, not starting with '/' and not ending with '/' or '.'.
    /// </summary>
    public static void ValidateBlob(string blob)
    {
        ArgumentNullException.ThrowIfNull(blob);
        var ok = blob.Length is >= 1 and <= MaxBlobNameLength
            && blob[0] != '/'
            && blob[^1] is not ('/' or '.')
            && !blob.Any(char.IsControl);
        if (!ok)
        {
            throw new ArgumentException(
                $"Blob name '{blob}' is not allowed: use 1-{MaxBlobNameLength} characters without control characters, not starting with '/' and not ending with '/' or '.'.",
                nameof(blob));
        }
    }

    private static bool IsLowerAlnum(char c) => c is (>= 'a' and <= 'z') or (>= '0' and <= '9');
}
