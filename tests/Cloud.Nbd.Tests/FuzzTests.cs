using System.Buffers.Binary;
using System.Net.Sockets;
using Xunit.Abstractions;
using static Cloud.Nbd.NbdProtocol;

namespace Cloud.Nbd.Tests;

/// <summary>
/// Sends random and truncated messages at a running server, then checks that it still serves a well-behaved
/// client and that no refused or cut-off request changed the data. Replay a failure with NBD_FUZZ_SEED=seed.
/// </summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    private const long SizeBytes = 4L << 20;
    private const int Connections = 400;

    [Fact]
    public async Task RandomAndTruncatedMessages_NeverCrashHangOrCorrupt()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("NBD_FUZZ_SEED"), out var s)
            ? s
            : Random.Shared.Next();
        output.WriteLine($"NBD fuzz seed: {seed} (replay with NBD_FUZZ_SEED={seed})");
        var rng = new Random(seed);

        var data = new MemoryVolume("data", SizeBytes);
        var scratch = new MemoryVolume("scratch", SizeBytes);
        var pattern = new byte[SizeBytes];
        rng.NextBytes(pattern);
        await data.WriteAsync(0, pattern.AsMemory(0, 1 << 20));
        for (long o = 1 << 20; o < SizeBytes; o += 1 << 20)
        {
            await data.WriteAsync(o, pattern.AsMemory((int)o, 1 << 20));
        }
        await using var server = await TestServer.StartAsync(o =>
        {
            o.HandshakeTimeout = TimeSpan.FromSeconds(2);
            o.MaxPayloadBytes = 1 << 20;
            o.MaxOptionLengthBytes = 4096;
        }, data, scratch);

        for (var i = 0; i < Connections; i++)
        {
            var bytes = Scenario(rng, out var readBack);
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(server.EndPoint);
            try
            {
                await socket.SendAsync(bytes);
                if (readBack)
                {
                    // Take whatever the server says for a moment, then hang up.
                    var sink = new byte[65536];
                    using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(20));
                    try
                    {
                        while (await socket.ReceiveAsync(sink, SocketFlags.None, cts.Token) > 0)
                        {
                        }
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }
            }
            catch (SocketException)
            {
                // The server may close first (it is allowed to, on protocol violations).
            }
            socket.Close(rng.Next(2) == 0 ? 0 : 1);
        }

        // No connection hangs around once its client has gone.
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (server.Server.ConnectionCount > 0 && !wait.IsCancellationRequested)
            {
                await Task.Delay(50);
            }
        }
        Assert.True(
            server.Server.ConnectionCount == 0,
            $"seed {seed}: {server.Server.ConnectionCount} connections still open after their clients left");

        // A well-behaved client is still served, and the data volume is exactly as before.
        await using var client = await RawNbdClient.OpenAsync(server.EndPoint, "data");
        for (long o = 0; o < SizeBytes; o += 1 << 20)
        {
            var read = await client.ReadBlockAsync((ulong)o, (ulong)o, 1 << 20);
            Assert.Equal(0u, read.Error);
            Assert.True(pattern.AsSpan((int)o, 1 << 20).SequenceEqual(read.Data), $"seed {seed}: data changed at {o}");
        }
        await client.DisconnectAsync();
        await using var scratchClient = await RawNbdClient.OpenAsync(server.EndPoint, "scratch", structured: false);
        var block = new byte[4096];
        rng.NextBytes(block);
        Assert.Equal(0u, (await scratchClient.CommandAsync(CmdWrite, 1, 8192, 4096, CmdFlagFua, block)).Error);
        Assert.Equal(block, (await scratchClient.ReadBlockAsync(2, 8192, 4096)).Data);
    }

    /// <summary>
    /// The same random and truncated conversations inside TLS (x509, TLS required): each connection sends STARTTLS,
    /// completes the handshake, and sends its damage encrypted; some send noise instead of a TLS handshake or cut
    /// the TLS session mid-record. Afterwards a TLS client is still served and no data changed.
    /// </summary>
    [Fact]
    public async Task RandomAndTruncatedMessagesInsideTls_NeverCrashHangOrCorrupt()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("NBD_FUZZ_SEED"), out var s)
            ? s
            : Random.Shared.Next();
        output.WriteLine($"NBD TLS fuzz seed: {seed} (replay with NBD_FUZZ_SEED={seed})");
        var rng = new Random(seed);
        var dir = Directory.CreateTempSubdirectory("nbd-tls-fuzz-").FullName;
        try
        {
            var keys = await TlsTestKeys.CreateAsync(dir);
            var data = new MemoryVolume("data", SizeBytes);
            var pattern = new byte[SizeBytes];
            rng.NextBytes(pattern);
            for (long o = 0; o < SizeBytes; o += 1 << 20)
            {
                await data.WriteAsync(o, pattern.AsMemory((int)o, 1 << 20));
            }
            await using var server = await TestServer.StartAsync(o =>
            {
                o.HandshakeTimeout = TimeSpan.FromSeconds(2);
                o.MaxPayloadBytes = 1 << 20;
                o.MaxOptionLengthBytes = 4096;
                o.Tls = NbdTlsMode.Require;
                o.TlsCertificatePath = keys.ServerCertificatePath;
                o.TlsKeyPath = keys.ServerKeyPath;
            }, data, new MemoryVolume("scratch", SizeBytes));

            for (var i = 0; i < TlsConnections; i++)
            {
                await TlsConnectionAsync(server, keys, rng);
            }
            using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                while (server.Server.ConnectionCount > 0 && !wait.IsCancellationRequested)
                {
                    await Task.Delay(50);
                }
            }
            Assert.True(
                server.Server.ConnectionCount == 0,
                $"seed {seed}: {server.Server.ConnectionCount} TLS connections still open after their clients left");

            await using var client = await RawNbdClient.ConnectAsync(server.EndPoint);
            await client.SendClientFlagsAsync(ClientFlagFixedNewstyle | ClientFlagNoZeroes);
            Assert.Equal(RepAck, (await client.StartTlsAsync(keys.Ca)).Type);
            var (final, _) = await client.InfoOrGoAsync(OptGo, "data");
            Assert.Equal(RepAck, final.Type);
            for (long o = 0; o < SizeBytes; o += 1 << 20)
            {
                var read = await client.ReadBlockAsync((ulong)o, (ulong)o, 1 << 20);
                Assert.Equal(0u, read.Error);
                Assert.True(pattern.AsSpan((int)o, 1 << 20).SequenceEqual(read.Data), $"seed {seed}: data changed at {o}");
            }
            await client.DisconnectAsync();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>TLS handshakes cost a few milliseconds each: fewer connections than in plain text.</summary>
    private const int TlsConnections = 150;

    private static async Task TlsConnectionAsync(TestServer server, TlsTestKeys keys, Random rng)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(server.EndPoint);
        await using var network = new NetworkStream(socket, ownsSocket: false);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await network.ReadExactlyAsync(new byte[18], cts.Token);
            var hello = new MemoryStream();
            Write(hello, U32(ClientFlagFixedNewstyle | ClientFlagNoZeroes));
            if (rng.Next(8) == 0)
            {
                // Options the server must refuse before STARTTLS, sometimes EXPORT_NAME, which closes.
                Write(hello, U64(IHaveOpt));
                Write(hello, U32(rng.Next(3) == 0 ? OptExportName : OptList));
                Write(hello, U32(0));
            }
            Write(hello, U64(IHaveOpt));
            Write(hello, U32(OptStartTls));
            Write(hello, U32(0));
            await network.WriteAsync(hello.ToArray(), cts.Token);
            if (rng.Next(10) == 0)
            {
                // Noise where the ClientHello belongs.
                await network.WriteAsync(RandomBytes(rng, rng.Next(1, 600)), cts.Token);
                socket.Close(rng.Next(2));
                return;
            }
            await using var ssl = new System.Net.Security.SslStream(network, leaveInnerStreamOpen: true);
            // Read up to the STARTTLS ACK (after a refused option's reply, if one was sent), then the handshake.
            while (true)
            {
                var header = new byte[20];
                await network.ReadExactlyAsync(header, cts.Token);
                var length = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
                await network.ReadExactlyAsync(new byte[length], cts.Token);
                if (BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)) == OptStartTls)
                {
                    break;
                }
            }
            await ssl.AuthenticateAsClientAsync(
                new System.Net.Security.SslClientAuthenticationOptions
                {
                    TargetHost = "localhost",
                    RemoteCertificateValidationCallback = (_, _, _, _) => true,
                },
                cts.Token);
            var bytes = Scenario(rng, out var readBack, afterStartTls: true);
            await ssl.WriteAsync(bytes, cts.Token);
            if (readBack)
            {
                using var brief = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
                brief.CancelAfter(TimeSpan.FromMilliseconds(20));
                var sink = new byte[65536];
                while (await ssl.ReadAsync(sink, brief.Token) > 0)
                {
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException
            or System.Security.Authentication.AuthenticationException)
        {
            // The server may close first (it is allowed to, on protocol violations and after EXPORT_NAME).
        }
        // Half of the time a hard close, cutting the TLS session without close_notify.
        socket.Close(rng.Next(2) == 0 ? 0 : 1);
    }

    /// <summary>One connection's bytes: a prefix of a plausible conversation, with random damage.</summary>
    private static byte[] Scenario(Random rng, out bool readBack, bool afterStartTls = false)
    {
        var m = new MemoryStream();
        readBack = rng.Next(2) == 0;
        var kind = rng.Next(6);
        if (kind == 0)
        {
            // Pure noise from the first byte.
            Write(m, RandomBytes(rng, rng.Next(0, 300)));
            return m.ToArray();
        }
        if (!afterStartTls)
        {
            // Inside TLS option haggling starts again, without the client flags.
            Write(
                m,
                U32(
                    rng.Next(4) == 0 ? (uint)rng.Next() : ClientFlagFixedNewstyle | (uint)rng.Next(
                        2) * ClientFlagNoZeroes));
        }
        var toData = rng.Next(2) == 0;
        var options = rng.Next(0, 6);
        for (var i = 0; i < options; i++)
        {
            var option = rng.Next(4) switch
            {
                0 => (uint)rng.Next(0, 16),
                1 => OptInfo,
                2 => OptStructuredReply,
                _ => (uint)rng.Next(),
            };
            var body = option is OptInfo or OptGo && rng.Next(2) == 0
                ? RawNbdClient.InfoRequest(toData ? "data" : "scratch")
                : RandomBytes(rng, rng.Next(0, 64));
            var declared = rng.Next(5) == 0 ? (uint)rng.Next() : (uint)body.Length;
            Write(m, U64(rng.Next(20) == 0 ? (ulong)rng.NextInt64() : IHaveOpt));
            Write(m, U32(option));
            Write(m, U32(declared));
            Write(m, body);
        }
        if (kind >= 2)
        {
            if (rng.Next(3) == 0)
            {
                Write(m, U64(IHaveOpt));
                Write(m, U32(OptStructuredReply));
                Write(m, U32(0));
            }
            var go = RawNbdClient.InfoRequest(toData ? "data" : "scratch", InfoBlockSize);
            Write(m, U64(IHaveOpt));
            Write(m, U32(OptGo));
            Write(m, U32((uint)go.Length));
            Write(m, go);
            var requests = rng.Next(1, 12);
            for (var i = 0; i < requests; i++)
            {
                var type = (ushort)(rng.Next(3) == 0 ? rng.Next(0, 12) : rng.Next(0, 7));
                if (type == CmdDisc && rng.Next(2) == 0)
                {
                    type = CmdRead;
                }
                var flags = (ushort)(rng.Next(3) == 0 ? rng.Next(0, 64) : 0);
                var offset = rng.Next(3) switch
                {
                    0 => (ulong)rng.NextInt64(),
                    1 => (ulong)rng.Next(0, (int)(SizeBytes / 4096)) * 4096,
                    _ => (ulong)rng.Next(0, (int)SizeBytes),
                };
                var length = rng.Next(3) switch
                {
                    0 => (uint)rng.Next(),
                    1 => (uint)rng.Next(0, 16) * 4096,
                    _ => (uint)rng.Next(0, 100000),
                };
                var writes = type is CmdWrite or CmdTrim or CmdWriteZeroes;
                if (toData && writes)
                {
                    // Requests to the data volume must all be refused: make them unaligned or out of range.
                    offset = rng.Next(2) == 0 ? offset | 1 : (ulong)SizeBytes + (offset & 0xffff);
                }
                Write(m, U32(rng.Next(30) == 0 ? (uint)rng.Next() : RequestMagic));
                Write(m, U16(flags));
                Write(m, U16(type));
                Write(m, U64((ulong)rng.NextInt64()));
                Write(m, U64(offset));
                Write(m, U32(length));
                if (type == CmdWrite)
                {
                    Write(m, RandomBytes(rng, (int)Math.Min(length, 70000u)));
                }
            }
        }
        var all = m.ToArray();
        // Truncate at a random point half of the time.
        return rng.Next(2) == 0 ? all : all.AsSpan(0, rng.Next(0, all.Length + 1)).ToArray();
    }

    private static void Write(MemoryStream m, byte[] b) => m.Write(b);

    private static byte[] RandomBytes(Random rng, int n)
    {
        var b = new byte[n];
        rng.NextBytes(b);
        return b;
    }

    private static byte[] U16(ushort v)
    {
        var b = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(b, v);
        return b;
    }

    private static byte[] U32(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    }

    private static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, v);
        return b;
    }
}
