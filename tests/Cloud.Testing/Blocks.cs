namespace Cloud.Testing;

/// <summary>
/// Deterministic block contents: the same seed gives the same bytes in every test project and every run.
/// </summary>
public static class Blocks
{
    /// <summary>
    /// <paramref name="lengthBytes"/> pseudo-random bytes from <see cref="Random"/> seeded with
    /// <paramref name="seed"/>;
    /// different seeds give different contents, so a block read back from the wrong place or time is caught.
    /// </summary>
    public static byte[] Pattern(int lengthBytes, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthBytes);
        var data = new byte[lengthBytes];
        new Random(seed).NextBytes(data);
        return data;
    }
}
