using System.Buffers.Binary;
using System.Text;
using static Cloud.Nbd.NbdProtocol;

namespace Cloud.Nbd.Tests;

public sealed class HandshakeTests
{
    private const long SizeBytes = 8L << 20;

    [Fact]
    public async Task Greeting_AdvertisesFixedNewstyleAndNoZeroes()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        Assert.Equal(FlagFixedNewstyle | FlagNoZeroes, client.HandshakeFlags);
    }

    [Fact]
    public async Task List_ReturnsEveryVolumeThenAck()
    {
        await using var server = await TestServer.StartAsync(
            new MemoryVolume("alpha", SizeBytes), new MemoryVolume("beta", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(OptList, []);
        var names = new List<string>();
        while (true)
        {
            var r = await client.ReadOptionReplyAsync();
            if (r.Type == RepAck)
            {
                break;
            }
            Assert.Equal(RepServer, r.Type);
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(r.Data);
            names.Add(Encoding.UTF8.GetString(r.Data, 4, length));
        }
        Assert.Equal(["alpha", "beta"], names);
    }

    [Fact]
    public async Task List_WithData_IsInvalidAndNextOptionStillWorks()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(OptList, [1, 2, 3]);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        var (final, _) = await client.InfoOrGoAsync(OptInfo, "v1");
        Assert.Equal(RepAck, final.Type);
    }

    [Fact]
    public async Task Info_ReportsSizeBlockSizesAndFlags()
    {
        var volume = new MemoryVolume(
            "v1", SizeBytes, blockSizeBytes: 4096, preferredIoSizeBytes: 256 << 10, maxIoSizeBytes: 1 << 20);
        await using var server = await TestServer.StartAsync(volume);
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        var (final, infos) = await client.InfoOrGoAsync(OptInfo, "v1", InfoBlockSize, InfoName);
        Assert.Equal(RepAck, final.Type);
        Assert.Equal((ulong)SizeBytes, client.ExportSize);
        Assert.Equal(4096u, client.MinBlock);
        Assert.Equal(256u << 10, client.PreferredBlock);
        Assert.True(client.MaxPayload >= 1 << 20, $"maximum payload {client.MaxPayload} < 1 MiB");
        Assert.Equal("v1", client.CanonicalName);
        ushort expected = TxHasFlags | TxSendFlush | TxSendFua | TxSendTrim | TxSendWriteZeroes | TxCanMultiConn;
        Assert.Equal(expected, client.TransmissionFlags);
        // INFO does not enter transmission: another option is answered.
        await client.SendOptionAsync(OptList, []);
        Assert.Equal(RepServer, (await client.ReadOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task Info_AfterStructuredReply_AdvertisesDontFragment()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1", structured: true);
        Assert.NotEqual(0, client.TransmissionFlags & TxSendDf);
    }

    [Fact]
    public async Task MultiConn_NotAdvertised_WhenTurnedOff()
    {
        await using var server = await TestServer.StartAsync(
            o => o.AdvertiseMultiConnection = false, new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "v1");
        Assert.Equal(0, client.TransmissionFlags & TxCanMultiConn);
    }

    [Fact]
    public async Task Go_UnknownExport_IsErrUnknownWithMessage_AndClientMayRetry()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        var (final, infos) = await client.InfoOrGoAsync(OptGo, "nope");
        Assert.Equal(RepErrUnknown, final.Type);
        Assert.Empty(infos);
        Assert.Contains("nope", final.Text);
        var (retry, _) = await client.InfoOrGoAsync(OptGo, "v1");
        Assert.Equal(RepAck, retry.Type);
    }

    [Fact]
    public async Task Go_EmptyName_PicksTheOnlyVolume()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("only", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        var (final, _) = await client.InfoOrGoAsync(OptGo, "");
        Assert.Equal(RepAck, final.Type);
        Assert.Equal("only", client.CanonicalName);
    }

    [Fact]
    public async Task Go_EmptyName_WithTwoVolumes_IsAnErrorNamingThem()
    {
        await using var server = await TestServer.StartAsync(
            new MemoryVolume("a", SizeBytes), new MemoryVolume("b", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        var (final, _) = await client.InfoOrGoAsync(OptGo, "");
        Assert.Equal(RepErrUnknown, final.Type);
        Assert.Contains("a, b", final.Text);
    }

    [Fact]
    public async Task Go_MalformedData_IsInvalid()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        // Name length larger than the option data.
        var data = RawNbdClient.InfoRequest("v1");
        BinaryPrimitives.WriteUInt32BigEndian(data, 1000);
        await client.SendOptionAsync(OptGo, data);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        // Information request count that disagrees with the length.
        data = RawNbdClient.InfoRequest("v1", InfoBlockSize);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6), 7);
        await client.SendOptionAsync(OptGo, data);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        // Invalid UTF-8 in the name.
        await client.SendOptionAsync(OptGo, [0, 0, 0, 2, 0xff, 0xfe, 0, 0]);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        // Too short.
        await client.SendOptionAsync(OptInfo, [0, 0]);
        Assert.Equal(RepErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        var (final, _) = await client.InfoOrGoAsync(OptGo, "v1");
        Assert.Equal(RepAck, final.Type);
    }

    [Theory]
    [InlineData(4u)] // PEEK_EXPORT
    [InlineData(5u)] // STARTTLS
    [InlineData(9u)] // LIST_META_CONTEXT
    [InlineData(10u)] // SET_META_CONTEXT
    [InlineData(0xdeadbeefu)]
    public async Task UnknownOption_IsUnsupported_AndTheNextOptionParses(uint option)
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(option, Encoding.UTF8.GetBytes("some option data"));
        var reply = await client.ReadOptionReplyAsync();
        Assert.Equal(option, reply.Option);
        Assert.Equal(RepErrUnsup, reply.Type);
        var (final, _) = await client.InfoOrGoAsync(OptGo, "v1");
        Assert.Equal(RepAck, final.Type);
    }

    [Fact]
    public async Task Abort_IsAcknowledgedAndClosed()
    {
        var resolver = new MemoryVolume("v1", SizeBytes);
        await using var server = await TestServer.StartAsync(resolver);
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(OptAbort, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task ExportName_OldStyle_SendsSizeAndFlags_WithAndWithoutZeroes()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        foreach (var noZeroes in new[] { true, false })
        {
            await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
            await client.SendClientFlagsAsync(ClientFlagFixedNewstyle | (noZeroes ? ClientFlagNoZeroes : 0));
            await client.SendOptionAsync(OptExportName, Encoding.UTF8.GetBytes("v1"));
            var reply = await client.ReadAsync(noZeroes ? 10 : 134);
            Assert.Equal((ulong)SizeBytes, BinaryPrimitives.ReadUInt64BigEndian(reply));
            Assert.NotEqual(0, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)) & TxHasFlags);
            if (!noZeroes)
            {
                Assert.All(reply.AsSpan(10).ToArray(), b => Assert.Equal(0, b));
            }
            // Transmission works: a simple-reply read.
            var read = await client.ReadBlockAsync(1, 0, 4096);
            Assert.Equal(0u, read.Error);
            await client.DisconnectAsync();
        }
    }

    [Fact]
    public async Task ExportName_Unknown_ClosesTheConnection()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(OptExportName, Encoding.UTF8.GetBytes("nope"));
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task UnknownClientFlags_CloseTheConnection()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(0x80);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task BadOptionMagic_ClosesTheConnection()
    {
        await using var server = await TestServer.StartAsync(new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.WriteAsync(new byte[16]);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task OversizedOption_IsTooBig_AndSkipped()
    {
        await using var server = await TestServer.StartAsync(
            o => o.MaxOptionLengthBytes = 4096, new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        await client.SendOptionAsync(OptList, new byte[10000]);
        Assert.Equal(RepErrTooBig, (await client.ReadOptionReplyAsync()).Type);
        var (final, _) = await client.InfoOrGoAsync(OptGo, "v1");
        Assert.Equal(RepAck, final.Type);
    }

    [Fact]
    public async Task SilentClient_IsClosedAfterTheHandshakeTimeout()
    {
        await using var server = await TestServer.StartAsync(
            o => o.HandshakeTimeout = TimeSpan.FromSeconds(1), new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task TooManyOptions_CloseTheConnection()
    {
        await using var server = await TestServer.StartAsync(
            o => o.MaxOptionsPerHandshake = 3, new MemoryVolume("v1", SizeBytes));
        await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
        await client.SendClientFlagsAsync(ClientFlagFixedNewstyle);
        for (var i = 0; i < 3; i++)
        {
            await client.SendOptionAsync(OptStructuredReply, []);
            Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        }
        Assert.True(await client.IsClosedByServerAsync());
    }
}
