using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Cloud.Grains.FirstServers;

/// <summary>
/// Identities of replicated writes: a random 64-bit prefix drawn once per process and a counter, as an RFC 9562
/// version-8 UUID. <see cref="Guid.NewGuid"/> reads the kernel's random source once per call (a system call per write
/// on Linux, a few per cent of a silo's CPU in random 4 KiB writes); the identity needs to be unique, not
/// unpredictable: unique within a process by the counter, across processes by the prefix (two silos' prefixes collide
/// with probability 2^-58).
/// </summary>
internal static class WriteIds
{
    private static readonly ulong Prefix = BinaryPrimitives.ReadUInt64BigEndian(RandomNumberGenerator.GetBytes(8));
    private static long _counter;

    /// <summary>The next identity.</summary>
    public static Guid Next()
    {
        Span<byte> bytes = stackalloc byte[16];
        // Version 8 in the high nibble of byte 6, the RFC variant (binary 10) in the top bits of byte 8; the counter
        // keeps its low 62 bits, which no process outruns.
        BinaryPrimitives.WriteUInt64BigEndian(bytes, (Prefix & ~0xF000UL) | 0x8000UL);
        BinaryPrimitives.WriteUInt64BigEndian(
            bytes[8..], ((ulong)Interlocked.Increment(ref _counter) & 0x3FFF_FFFF_FFFF_FFFFUL) | 0x8000_0000_0000_0000UL);
        return new Guid(bytes, bigEndian: true);
    }
}
