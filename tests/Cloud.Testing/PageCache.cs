using System.Runtime.InteropServices;

namespace Cloud.Testing;

/// <summary>
/// What the kernel's page cache holds of a file range, from Linux's <c>cachestat</c> system call (6.5 and later): how
/// many pages are cached, dirty (written, not yet on the disk) and under writeback. A test asks it whether a flush made
/// a file's completed writes durable, whichever process wrote them.
/// </summary>
public static partial class PageCache
{
    /// <summary>The pages of a range, by state.</summary>
    public readonly record struct State(long Cached, long Dirty, long Writeback);

    private const long SysCachestat = 451; // x86_64 and aarch64 alike (the unified syscall table)

    [StructLayout(LayoutKind.Sequential)]
    private struct Range
    {
        public ulong Offset;
        public ulong Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Stat
    {
        public ulong Cache;
        public ulong Dirty;
        public ulong Writeback;
        public ulong Evicted;
        public ulong RecentlyEvicted;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Cachestat(long number, int fd, ref Range range, out Stat stat, uint flags);

    /// <summary>
    /// The state of <paramref name="length"/> bytes of <paramref name="path"/> from <paramref name="offset"/> (a length
    /// of 0: to the end of the file).
    /// </summary>
    public static State Of(string path, long offset = 0, long length = 0)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var range = new Range { Offset = (ulong)offset, Length = (ulong)length };
        if (Cachestat(SysCachestat, (int)handle.DangerousGetHandle(), ref range, out var stat, 0) != 0)
        {
            throw new IOException(
                $"cachestat of {path} failed (errno {Marshal.GetLastPInvokeError()}); it needs Linux 6.5 or later");
        }
        return new State((long)stat.Cache, (long)stat.Dirty, (long)stat.Writeback);
    }
}
