using static Cloud.Nbd.NbdProtocol;

namespace Cloud.Nbd.Tests;

public sealed class TransmissionTests
{
    private const long SizeBytes = 8L << 20;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WriteThenRead_ReturnsTheData(bool structured)
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured);
        var data = Blocks.Pattern(64 << 10, 3);
        Assert.Equal(0u, (await client.CommandAsync(CmdWrite, 1, 1 << 20, (uint)data.Length, payload: data)).Error);
        var read = await client.ReadBlockAsync(2, 1 << 20, (uint)data.Length);
        Assert.Equal(0u, read.Error);
        Assert.Equal(data, read.Data);
        Assert.Equal(data, volume.Snapshot().AsSpan(1 << 20, data.Length).ToArray());
        await client.DisconnectAsync();
    }

    [Fact]
    public async Task LargerThanVolumeMaxIo_IsSplitIntoPieces()
    {
        var volume = new MemoryVolume("v1", SizeBytes, maxIoSizeBytes: 64 << 10);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        var data = Blocks.Pattern(1 << 20, 9);
        Assert.Equal(0u, (await client.CommandAsync(CmdWrite, 1, 0, (uint)data.Length, payload: data)).Error);
        Assert.Equal(16, volume.Writes);
        Assert.Equal(data, (await client.ReadBlockAsync(2, 0, (uint)data.Length)).Data);
    }

    [Fact]
    public async Task Fua_WritesWithForceUnitAccess_AndFlushFlushes()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        var data = Blocks.Pattern(4096, 1);
        Assert.Equal(0u, (await client.CommandAsync(CmdWrite, 1, 0, 4096, payload: data)).Error);
        Assert.Equal(0, volume.FuaWrites);
        Assert.Equal(0u, (await client.CommandAsync(CmdWrite, 2, 0, 4096, flags: CmdFlagFua, payload: data)).Error);
        Assert.Equal(1, volume.FuaWrites);
        Assert.Equal(0, volume.Flushes);
        Assert.Equal(0u, (await client.CommandAsync(CmdFlush, 3, 0, 0)).Error);
        Assert.Equal(1, volume.Flushes);
    }

    [Fact]
    public async Task Trim_ReadsBackZeroes()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        var data = Blocks.Pattern(16384, 5);
        await client.CommandAsync(CmdWrite, 1, 8192, 16384, payload: data);
        Assert.Equal(0u, (await client.CommandAsync(CmdTrim, 2, 12288, 4096)).Error);
        var read = (await client.ReadBlockAsync(3, 8192, 16384)).Data!;
        Assert.Equal(data.AsSpan(0, 4096).ToArray(), read.AsSpan(0, 4096).ToArray());
        Assert.All(read.AsSpan(4096, 4096).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(data.AsSpan(8192).ToArray(), read.AsSpan(8192).ToArray());
    }

    [Fact]
    public async Task WriteZeroes_WithNoHole_WritesZeroesInsteadOfTrimming()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        var data = Blocks.Pattern(3 << 20, 5);
        await client.CommandAsync(CmdWrite, 1, 0, (uint)data.Length, payload: data);
        var writesBefore = volume.Writes;
        Assert.Equal(0u, (await client.CommandAsync(CmdWriteZeroes, 2, 4096, 2 << 20, flags: CmdFlagNoHole)).Error);
        Assert.Equal(0, volume.Trims);
        Assert.True(volume.Writes > writesBefore);
        Assert.Equal(
            0u, (await client.CommandAsync(CmdWriteZeroes, 3, (2 << 20) + 8192, 8192, flags: CmdFlagFua)).Error);
        Assert.Equal(1, volume.Trims);
        Assert.Equal(1, volume.Flushes);
        var snapshot = volume.Snapshot();
        Assert.Equal(data.AsSpan(0, 4096).ToArray(), snapshot.AsSpan(0, 4096).ToArray());
        Assert.True(snapshot.AsSpan(4096, 2 << 20).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(snapshot.AsSpan((2 << 20) + 8192, 8192).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(data.AsSpan((2 << 20) + 4096, 4096).ToArray(), snapshot.AsSpan((2 << 20) + 4096, 4096).ToArray());
    }

    [Theory]
    [InlineData(CmdRead, SizeBytes, 4096u, EInval)]
    [InlineData(CmdRead, SizeBytes - 4096, 8192u, EInval)]
    [InlineData(CmdRead, 512, 4096u, EInval)]
    [InlineData(CmdTrim, SizeBytes - 4096, 8192u, EInval)]
    [InlineData(CmdTrim, 0, 100u, EInval)]
    [InlineData(CmdWriteZeroes, SizeBytes, 4096u, ENoSpc)]
    [InlineData(CmdWriteZeroes, 0, 1000u, EInval)]
    [InlineData(CmdFlush, 4096, 0u, EInval)]
    [InlineData(CmdBlockStatus, 0, 4096u, EInval)]
    [InlineData((ushort)99, 0, 4096u, EInval)]
    public async Task BadRequest_GetsTheProtocolsError_AndTheConnectionStaysUsable(
        ushort command,
        long offset,
        uint length,
        uint expectedError)
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        foreach (var structured in new[] { true, false })
        {
            await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured);
            RawNbdClient.Reply reply = command == CmdRead
                ? await client.ReadBlockAsync(7, (ulong)offset, length)
                : await client.CommandAsync(command, 7, (ulong)offset, length);
            Assert.Equal(expectedError, reply.Error);
            if (structured)
            {
                Assert.False(string.IsNullOrEmpty(reply.Message));
            }
            Assert.Equal(0u, (await client.ReadBlockAsync(8, 0, 4096)).Error);
            await client.DisconnectAsync();
        }
        Assert.True(volume.Snapshot().AsSpan().IndexOfAnyExcept((byte)0) < 0, "a refused request changed the volume");
    }

    [Fact]
    public async Task WritePastTheEnd_IsNoSpace_AndChangesNothing()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        var data = Blocks.Pattern(8192, 1);
        Assert.Equal(ENoSpc, (await client.CommandAsync(CmdWrite, 1, SizeBytes - 4096, 8192, payload: data)).Error);
        Assert.Equal(ENoSpc, (await client.CommandAsync(CmdWrite, 2, ulong.MaxValue - 100, 8192, payload: data)).Error);
        Assert.Equal(
            EInval, (await client.CommandAsync(CmdWrite, 3, 100, 4096, payload: data.AsSpan(0, 4096).ToArray())).Error);
        Assert.Equal(0, volume.Writes);
        Assert.Equal(0u, (await client.CommandAsync(CmdWrite, 4, 0, 8192, payload: data)).Error);
        Assert.Equal(data, (await client.ReadBlockAsync(5, 0, 8192)).Data);
    }

    [Fact]
    public async Task OversizedRequests_AreRefused_AndTheStreamStaysInStep()
    {
        var volume = new MemoryVolume("v1", 64L << 20);
        await using var server = await TestServer.StartAsync(o => o.MaxPayloadBytes = 1 << 20, volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured: true);
        Assert.Equal(1u << 20, client.MaxPayload);
        Assert.Equal(EOverflow, (await client.ReadBlockAsync(1, 0, 2 << 20)).Error);
        // An oversized write's payload is read and dropped so the next request parses.
        var big = Blocks.Pattern(2 << 20, 4);
        Assert.Equal(EInval, (await client.CommandAsync(CmdWrite, 2, 0, (uint)big.Length, payload: big)).Error);
        Assert.Equal(0, volume.Writes);
        // Payload-less commands may exceed the maximum payload.
        Assert.Equal(0u, (await client.CommandAsync(CmdWriteZeroes, 3, 0, 8 << 20, flags: CmdFlagNoHole)).Error);
        Assert.Equal(0u, (await client.CommandAsync(CmdTrim, 4, 0, 8 << 20)).Error);
        await client.DisconnectAsync();

        await using var simple = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured: false);
        Assert.Equal(EInval, (await simple.ReadBlockAsync(5, 0, 2 << 20)).Error);
        Assert.Equal(0u, (await simple.ReadBlockAsync(6, 0, 4096)).Error);
    }

    [Fact]
    public async Task HugeWritePayload_ClosesTheConnection()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        await client.SendRequestAsync(CmdWrite, 1, 0, uint.MaxValue);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task UnknownFlags_AreInvalid()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var simple = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured: false);
        Assert.Equal(EInval, (await simple.ReadBlockAsync(1, 0, 4096, flags: CmdFlagDf)).Error);
        Assert.Equal(EInval, (await simple.CommandAsync(CmdWriteZeroes, 2, 0, 4096, flags: CmdFlagFastZero)).Error);
        Assert.Equal(EInval, (await simple.CommandAsync(CmdTrim, 3, 0, 4096, flags: CmdFlagNoHole)).Error);
        Assert.Equal(EInval, (await simple.CommandAsync(CmdFlush, 4, 0, 0, flags: 0x100)).Error);
        await using var structured = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured: true);
        Assert.Equal(0u, (await structured.ReadBlockAsync(5, 0, 4096, flags: CmdFlagDf | CmdFlagFua)).Error);
    }

    [Fact]
    public async Task BadRequestMagic_ClosesTheConnection()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        await client.SendRequestAsync(CmdRead, 1, 0, 4096, magic: 0x12345678);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task PipelinedRequests_AllGetTheirReplies(bool structured)
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(o => o.MaxInFlightRequestsPerConnection = 8, volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured);
        const int Count = 200;
        var reads = new Dictionary<ulong, (ulong, uint)>();
        var expected = new Dictionary<ulong, byte[]>();
        // Replies are read concurrently, as real clients do, so neither side blocks on a full socket buffer.
        var sender = Task.Run(async () =>
        {
            for (var i = 0; i < Count; i++)
            {
                var offset = (ulong)(i % 64) * 65536;
                var data = Blocks.Pattern(4096, (byte)i);
                await client.SendRequestAsync(CmdWrite, (ulong)(1000 + i), offset, 4096, payload: data);
            }
        });
        var replies = new List<RawNbdClient.Reply>();
        for (var i = 0; i < Count; i++)
        {
            replies.Add(await client.ReadReplyAsync());
        }
        await sender;
        Assert.All(replies, r => Assert.Equal(0u, r.Error));
        Assert.Equal(
            Enumerable.Range(1000, Count).Select(i => (ulong)i).Order(), replies.Select(r => r.Cookie).Order());

        for (var i = 0; i < 64; i++)
        {
            reads[(ulong)i] = ((ulong)i * 65536, 8192);
        }
        foreach (var (cookie, (offset, length)) in reads)
        {
            await client.SendRequestAsync(CmdRead, cookie, offset, length);
        }
        var got = new Dictionary<ulong, byte[]>();
        for (var i = 0; i < reads.Count; i++)
        {
            var r = await client.ReadReplyAsync(reads);
            Assert.Equal(0u, r.Error);
            got[r.Cookie] = r.Data!;
        }
        var snapshot = volume.Snapshot();
        foreach (var (cookie, (offset, length)) in reads)
        {
            Assert.Equal(snapshot.AsSpan((int)offset, (int)length).ToArray(), got[cookie]);
        }
        await client.DisconnectAsync();
    }

    [Fact]
    public async Task AbruptDisconnect_MidPayload_LeavesTheServerServing()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        await using (var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1"))
        {
            await client.SendRequestAsync(CmdWrite, 1, 0, 65536, payload: Blocks.Pattern(1000, 1));
            client.HardClose();
        }
        await using var next = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        Assert.Equal(0u, (await next.ReadBlockAsync(1, 0, 4096)).Error);
        Assert.Equal(0, volume.Writes);
    }

    [Fact]
    public async Task Disc_AnswersInFlightRequestsBeforeClosing()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        var data = Blocks.Pattern(1 << 20, 2);
        await client.SendRequestAsync(CmdWrite, 1, 0, (uint)data.Length, payload: data);
        await client.SendRequestAsync(CmdDisc, 2, 0, 0);
        var reply = await client.ReadReplyAsync();
        Assert.Equal((1ul, 0u), (reply.Cookie, reply.Error));
        Assert.True(await client.IsClosedByServerAsync());
        Assert.Equal(data, volume.Snapshot().AsSpan(0, data.Length).ToArray());
    }

    [Fact]
    public async Task ServerStop_ClosesConnectionsAndReleasesVolumes()
    {
        var volume = new MemoryVolume("v1", SizeBytes);
        var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        Assert.Equal(0u, (await client.ReadBlockAsync(1, 0, 4096)).Error);
        await server.DisposeAsync();
        Assert.True(await client.IsClosedByServerAsync());
        Assert.Equal(0, server.Server.ConnectionCount);
        Assert.Equal(1, server.Resolver.Released);
    }

    [Fact]
    public async Task TooManyConnections_AreClosedAtOnce()
    {
        await using var server = await TestServer.StartAsync(
            o => o.MaxConnections = 1, new MemoryVolume("v1", SizeBytes));
        await using var first = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        await using var second = await RawNbdClient.ConnectAsync(server.EndPoint, readGreeting: false);
        Assert.True(await second.IsClosedByServerAsync());
        Assert.Equal(0u, (await first.ReadBlockAsync(1, 0, 4096)).Error);
    }

    [Fact]
    public async Task UnixSocket_ServesTheSameProtocol()
    {
        var dir = Directory.CreateTempSubdirectory("nbd-test-").FullName;
        try
        {
            var path = Path.Combine(dir, "nbd.sock");
            await using var server = await TestServer.StartAsync(
                o => o.UnixSocketPath = path, new MemoryVolume("v1", SizeBytes));
            Assert.True(File.Exists(path));
            using var socket = new System.Net.Sockets.Socket(
                System.Net.Sockets.AddressFamily.Unix,
                System.Net.Sockets.SocketType.Stream,
                System.Net.Sockets.ProtocolType.Unspecified);
            await socket.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            var hello = new byte[18];
            await socket.ReceiveAsync(hello);
            Assert.Equal(InitPasswd, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(hello));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
