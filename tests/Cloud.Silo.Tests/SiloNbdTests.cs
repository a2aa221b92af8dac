using System.Net;
using System.Text.Json;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Nbd;
using Cloud.Testing;

namespace Cloud.Silo.Tests;

/// <summary>The NBD endpoint of the real silo process, over a RAID-5 volume created through the SDK.</summary>
public sealed class SiloNbdTests
{
    private const long VolumeSizeBytes = 64L << 20;
    private const int ChunkSizeBytes = 64 << 10;

    [Fact]
    public async Task QemuIoWritesAndVerifies_AndNbdinfoDescribesTheVolume_ThroughTheSiloEndpoint()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        using var dir = new TempDirectory();
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"));
        await using (var client = await CloudClient.ConnectAsync(silo.Gateway))
        {
            await client.CreateVolumeAsync(
                new VolumeSpec("r5", VolumeSizeBytes, VolumeLevel.Raid5, 5, ChunkSizeBytes, Durable: false));
        }

        var info = await Tools.RunAsync(nbdinfo, ["--json", silo.NbdUri("r5")]);
        info.AssertSuccess("nbdinfo");
        using var json = JsonDocument.Parse(info.Output);
        var export = json.RootElement.GetProperty("exports")[0];
        Assert.Equal("r5", export.GetProperty("export-name").GetString());
        Assert.Equal(VolumeSizeBytes, export.GetProperty("export-size").GetInt64());
        // 512-byte sectors: the front end reads and rewrites a block that a request covers only in part.
        Assert.Equal(512, export.GetProperty("block_size_minimum").GetInt32());
        // A full stripe of a 4+1 RAID-5 with 64 KiB chunks: writes of it need no parity read-modify-write.
        Assert.Equal(4 * ChunkSizeBytes, export.GetProperty("block_size_preferred").GetInt32());
        Assert.True(export.GetProperty("can_flush").GetBoolean());
        Assert.True(export.GetProperty("can_fua").GetBoolean());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());

        // Patterns across stripe and partition boundaries, a FUA write and a flush; then every one read back.
        var write = await Tools.RunAsync(qemuIo, ["-f", "raw",
            "-c", "write -P 0xa1 0 1M",
            "-c", "write -P 0xb2 1020K 8K",
            "-c", "write -f -P 0xc3 5M 3M",
            "-c", "write -P 0xd4 63M 1M",
            "-c", "flush",
            silo.NbdUri("r5")]);
        write.AssertSuccess("qemu-io write");
        var verify = await Tools.RunAsync(qemuIo, ["-f", "raw",
            "-c", "read -P 0xa1 0 1020K",
            "-c", "read -P 0xb2 1020K 8K",
            "-c", "read -P 0x00 1028K 4092K",
            "-c", "read -P 0xc3 5M 3M",
            "-c", "read -P 0xd4 63M 1M",
            silo.NbdUri("r5")]);
        verify.AssertSuccess("qemu-io verify");
        Assert.DoesNotContain("Pattern verification failed", verify.Output, StringComparison.Ordinal);

        // The SDK sees what NBD wrote: both go through the same front end.
        await using (var client = await CloudClient.ConnectAsync(silo.Gateway))
        {
            var volume = await client.OpenVolumeAsync("r5");
            var bytes = new byte[8192];
            await volume.ReadAsync(1020 << 10, bytes);
            Assert.All(bytes, b => Assert.Equal(0xb2, b));
        }
    }

    /// <summary>
    /// Whole-stripe and partial writes in flight together through the silo's front end, whose write payloads are
    /// recycled once committed: fio checks every block it wrote, during the run and after it.
    /// </summary>
    [Fact]
    public async Task FioVerify_PipelinedWritesOfEverySize_ReadBackIntact_ThroughTheSiloEndpoint()
    {
        var fio = Tools.Require("fio", "fio");
        using var dir = new TempDirectory();
        await using var silo = await SiloProcess.StartAsync(Path.Combine(dir.Path, "data"));
        await using (var client = await CloudClient.ConnectAsync(silo.Gateway))
        {
            await client.CreateVolumeAsync(
                new VolumeSpec("v", VolumeSizeBytes, VolumeLevel.Raid5, 5, ChunkSizeBytes, Durable: false));
        }
        var job = Path.Combine(dir.Path, "verify.fio");
        File.WriteAllText(job, $"""
            [global]
            ioengine=nbd
            uri={silo.NbdUri("v")}
            iodepth=16
            verify=crc32c
            do_verify=1
            verify_fatal=1
            verify_backlog=8
            randrepeat=1

            [whole-stripes]
            rw=write
            bs=1M
            size=24M

            [mixed-sizes]
            stonewall
            rw=randwrite
            bsrange=4k-768k
            blockalign=4k
            offset=24M
            size=32M
            """);
        var r = (await Tools.RunAsync(fio, ["--output-format=json", job], TimeSpan.FromMinutes(3)))
            .AssertSuccess("fio");
        using var json = JsonDocument.Parse(r.Output[r.Output.IndexOf('{')..]);
        foreach (var j in json.RootElement.GetProperty("jobs").EnumerateArray())
        {
            Assert.Equal(0, j.GetProperty("error").GetInt32());
            Assert.True(j.GetProperty("read").GetProperty("io_bytes").GetInt64() > 0, "fio verified nothing");
        }
    }

    [Fact]
    public async Task FlushOnOneConnection_KeepsWritesAcknowledgedOnAnother_WhenTheSiloIsKilled()
    {
        using var dir = new TempDirectory();
        var data = Path.Combine(dir.Path, "data");
        const int Writes = 64;
        const int WriteBytes = 64 << 10;
        var seed = Environment.TickCount;
        var expected = new byte[Writes][];
        // Slow disks keep the copies queued at their target when the flush arrives, so the flush must wait for them:
        // without the injected latency they commit within a millisecond and a broken flush would go unnoticed.
        await using (var silo = await SiloProcess.StartAsync(data, environment: new Dictionary<string, string> { ["Cloud__InjectedDiskLatency"] = "00:00:00.050" }))
        {
            await using (var client = await CloudClient.ConnectAsync(silo.Gateway))
            {
                await client.CreateVolumeAsync(
                    new VolumeSpec("mc", VolumeSizeBytes, VolumeLevel.Raid5, 5, ChunkSizeBytes, Durable: false));
            }
            var endPoint = new IPEndPoint(IPAddress.Loopback, silo.NbdPort);
            await using var writer = await RawNbdClient.OpenAsync(endPoint, "mc");
            await using var flusher = await RawNbdClient.OpenAsync(endPoint, "mc");
            Assert.NotEqual(0, writer.TransmissionFlags & NbdProtocol.TxCanMultiConn);

            // Acknowledged (not FUA) writes on one connection: held as replicated copies until committed.
            var random = new Random(seed);
            for (var i = 0; i < Writes; i++)
            {
                expected[i] = new byte[WriteBytes];
                random.NextBytes(expected[i]);
                var reply = await writer.CommandAsync(
                    NbdProtocol.CmdWrite, (ulong)i + 1, (ulong)i * 3 * WriteBytes, WriteBytes, payload: expected[i]);
                Assert.True(reply.Error == 0, $"write {i} failed with NBD error {reply.Error} (seed {seed})");
            }
            // The flush goes to the other connection: CAN_MULTI_CONN promises it covers the first one's writes.
            var flushed = await flusher.CommandAsync(NbdProtocol.CmdFlush, 1000, 0, 0);
            Assert.Equal(0u, flushed.Error);

            // A crash: no graceful shutdown, nothing more is written after the flush's reply.
            await silo.Process.KillAsync();
        }

        await using var restarted = await SiloProcess.StartAsync(data);
        await using var again = await RawNbdClient.OpenAsync(
            new IPEndPoint(IPAddress.Loopback, restarted.NbdPort), "mc");
        for (var i = 0; i < Writes; i++)
        {
            var read = await again.ReadBlockAsync((ulong)i + 1, (ulong)i * 3 * WriteBytes, WriteBytes);
            Assert.Equal(0u, read.Error);
            Assert.True(
                expected[i].AsSpan().SequenceEqual(read.Data),
                $"write {i} at {i * 3 * WriteBytes} was lost after the flush (seed {seed})");
        }
    }
}
