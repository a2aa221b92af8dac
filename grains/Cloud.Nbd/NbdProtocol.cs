namespace Cloud.Nbd;

/// <summary>
/// Wire constants of the NBD protocol (fixed newstyle handshake, simple and structured replies),
/// as given by <c>doc/proto.md</c> of the NetworkBlockDevice/nbd project. All integers travel big-endian.
/// </summary>
internal static class NbdProtocol
{
    // Handshake magics.
    public const ulong InitPasswd = 0x4e42444d41474943; // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054; // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x3e889045565a9;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;
    public const uint KnownClientFlags = ClientFlagFixedNewstyle | ClientFlagNoZeroes;

    // Options.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;

    // Option reply types.
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepErrUnsup = 0x80000000 + 1;
    public const uint RepErrPolicy = 0x80000000 + 2;
    public const uint RepErrInvalid = 0x80000000 + 3;
    public const uint RepErrTlsReqd = 0x80000000 + 5;
    public const uint RepErrUnknown = 0x80000000 + 6;
    public const uint RepErrShutdown = 0x80000000 + 7;
    public const uint RepErrTooBig = 0x80000000 + 9;

    // Information types for NBD_OPT_INFO / NBD_OPT_GO.
    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxSendDf = 1 << 7;
    public const ushort TxCanMultiConn = 1 << 8;

    // Requests and replies.
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const int RequestHeaderBytes = 28;
    public const int SimpleReplyHeaderBytes = 16;
    public const int StructuredReplyHeaderBytes = 20;

    // Commands.
    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;

    // Command flags.
    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;
    public const ushort CmdFlagFastZero = 1 << 4;

    // Structured reply flags and types.
    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeError = 0x8000 + 1;

    // Error values.
    public const uint EPerm = 1;
    public const uint EIo = 5;
    public const uint ENoMem = 12;
    public const uint EInval = 22;
    public const uint ENoSpc = 28;
    public const uint EOverflow = 75;
    public const uint ENotSup = 95;
    public const uint EShutdown = 108;

    /// <summary>The protocol's limit on strings (export names, messages).</summary>
    public const int MaxStringBytes = 4096;

    /// <summary>
    /// The protocol says payloads up to 2^25 bytes should not be treated as a denial of service, so a write
    /// larger than our advertised maximum but within this is read and discarded (answered with an error);
    /// anything larger ends the connection.
    /// </summary>
    public const int MaxDiscardablePayloadBytes = 1 << 25;

    /// <summary>
    /// Room reserved in front of read buffers for the largest reply header (structured: 20 + 8 offset).
    /// </summary>
    public const int ReplyHeaderReserveBytes = 32;

    public static string OptionName(uint option) => option switch
    {
        OptExportName => "NBD_OPT_EXPORT_NAME",
        OptAbort => "NBD_OPT_ABORT",
        OptList => "NBD_OPT_LIST",
        4 => "NBD_OPT_PEEK_EXPORT",
        OptStartTls => "NBD_OPT_STARTTLS",
        OptInfo => "NBD_OPT_INFO",
        OptGo => "NBD_OPT_GO",
        OptStructuredReply => "NBD_OPT_STRUCTURED_REPLY",
        9 => "NBD_OPT_LIST_META_CONTEXT",
        10 => "NBD_OPT_SET_META_CONTEXT",
        11 => "NBD_OPT_EXTENDED_HEADERS",
        _ => $"option {option}",
    };

    public static string CommandName(ushort command) => command switch
    {
        CmdRead => "NBD_CMD_READ",
        CmdWrite => "NBD_CMD_WRITE",
        CmdDisc => "NBD_CMD_DISC",
        CmdFlush => "NBD_CMD_FLUSH",
        CmdTrim => "NBD_CMD_TRIM",
        CmdCache => "NBD_CMD_CACHE",
        CmdWriteZeroes => "NBD_CMD_WRITE_ZEROES",
        CmdBlockStatus => "NBD_CMD_BLOCK_STATUS",
        _ => $"command {command}",
    };
}
