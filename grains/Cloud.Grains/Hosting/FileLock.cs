namespace Cloud.Grains.Hosting;

/// <summary>
/// An exclusive lock between processes that share a directory: an open of a lock file with
/// <see cref="FileShare.None"/>, which .NET on Linux backs with an advisory <c>flock</c>, so it also excludes other
/// opens in the same process and ends when the process dies.
/// </summary>
internal static class FileLock
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// Takes the lock of <paramref name="path"/> (creating the file), waiting up to <paramref name="timeout"/>; dispose
    /// to release.
    /// </summary>
    /// <exception cref="TimeoutException">Another holder kept the lock for the whole
    /// <paramref name="timeout"/>.</exception>
    public static async Task<FileStream> AcquireAsync(
        string path,
        TimeSpan timeout,
        CancellationToken cancellationToken = default)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException ex) when (ex is not FileNotFoundException and not DirectoryNotFoundException)
            {
                if (DateTime.UtcNow >= deadline)
                    throw new TimeoutException(
                        $"{path} stayed locked by another process for {timeout.TotalSeconds:F0} s", ex);
                await Task.Delay(RetryDelay, cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
