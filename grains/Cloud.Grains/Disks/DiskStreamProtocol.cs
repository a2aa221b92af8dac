using System.Buffers.Binary;

namespace Cloud.Grains.Disks;

/// <summary>
/// The disk stream's wire format (docs/CLUSTER.md, "Disks across hosts"): one TCP connection from a silo to another
/// host's silo carries that silo's member reads and writes, many at once, each reply matched to its request by id.
/// Integers are little-endian.
/// </summary>
/// <remarks>
/// <para>Hello, client to server: magic <c>CLDS</c>, u16 version, u16 key length, the key (the serving silo's secret,
/// which only a caller of its disk grain learns), u16 writer length, the writer silo's address (UTF-8). The server
/// answers one byte, 0 for accepted, or 1 followed by a u16 length and a message.</para>
/// <para>Request: u8 op, u8[3] zero, u32 path length, u64 id, i64 offset, i32 length, u32 zero (32 bytes), then the
/// member's path (UTF-8), then for a write its <c>length</c> bytes.</para>
/// <para>A split request (version 2: <see cref="Op.ReadSplit"/>, <see cref="Op.WriteSplit"/>) moves two ranges of one member, a chunk's rows and its metadata sector: after the
/// path come i64 the second range's offset, i32 the first range's length (1 to <c>length - 1</c>), u32 zero; the
/// header's offset is the first range's and its length both ranges'; a write's payload, and a read's reply data, is the
/// first range's bytes, then the second's.</para>
/// <para>Reply: u64 id, u8 status, u8[3] zero, i32 length (16 bytes), then for a read answered with status 0 its
/// <c>length</c> bytes, or for an error the message (UTF-8).</para>
/// </remarks>
internal static class DiskStreamProtocol
{
    public const uint Magic = 0x53444C43; // "CLDS"

    /// <summary>The version this silo speaks: 2 added the split requests.</summary>
    public const ushort ProtocolVersion = 2;

    /// <summary>The oldest version a server still accepts (a caller of it sends no split requests).</summary>
    public const ushort MinProtocolVersion = 1;

    /// <summary>The split request's part after the path: the second range's offset and the first range's length.</summary>
    public const int SplitBytes = 16;

    public const int RequestHeaderBytes = 32;

    public const int ReplyHeaderBytes = 16;

    public const int MaxPathBytes = 4096;

    public const int MaxKeyBytes = 64;

    public const int MaxWriterBytes = 512;

    public const int MaxMessageBytes = 64 * 1024;

    /// <summary>The stream key's length: 256 random bits.</summary>
    public const int KeyBytes = 32;

    public enum Op : byte
    {
        Read = 1,
        Write = 2,
        WriteDurable = 3,
        Flush = 4,
        ReadSplit = 5,
        WriteSplit = 6,
    }

    public enum Status : byte
    {
        Ok = 0,

        /// <summary>The host's disk failed or refused (a <see cref="Abstractions.CloudStorageException"/>).</summary>
        StorageError = 1,

        /// <summary>The request was not allowed (a <see cref="Abstractions.CloudRequestException"/>).</summary>
        RequestError = 2,
    }

    public static void WriteRequestHeader(Span<byte> header, Op op, int pathBytes, long id, long offset, int length)
    {
        header[..RequestHeaderBytes].Clear();
        header[0] = (byte)op;
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], pathBytes);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], id);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], offset);
        BinaryPrimitives.WriteInt32LittleEndian(header[24..], length);
    }

    public static void WriteSplit(Span<byte> part, long secondOffset, int firstLength)
    {
        part[..SplitBytes].Clear();
        BinaryPrimitives.WriteInt64LittleEndian(part, secondOffset);
        BinaryPrimitives.WriteInt32LittleEndian(part[8..], firstLength);
    }

    public static void WriteReplyHeader(Span<byte> header, long id, Status status, int length)
    {
        header[..ReplyHeaderBytes].Clear();
        BinaryPrimitives.WriteInt64LittleEndian(header, id);
        header[8] = (byte)status;
        BinaryPrimitives.WriteInt32LittleEndian(header[12..], length);
    }
}
