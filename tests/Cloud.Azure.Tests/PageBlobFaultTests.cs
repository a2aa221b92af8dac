using Azure;
using Cloud.Azure.Tests.Infrastructure;
using Cloud.Storage.Azure;
using Cloud.Storage.Devices;
using Xunit.Abstractions;

namespace Cloud.Azure.Tests;

/// <summary>
/// Faults between the device and the service: throttling, dropped connections, lost acknowledgements, a dead service, a
/// deleted blob.
/// </summary>
[Collection(AzuriteCollection.Name)]
public sealed class PageBlobFaultTests(AzuriteFixture fixture, ITestOutputHelper output)
{
    private const int Sector = PageBlobBlockDevice.SectorBytes;
    private const long CapacityBytes = 16L * 1024 * 1024;

    [Fact]
    public async Task ThrottlingAndDroppedConnections_AreRetriedBySdk_AndEveryByteReadsBackCorrect()
    {
        var seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var faults = new SeededFaults(seed);
        await using var proxy = new FaultProxy(fixture.Azurite.Port, faults.Decide);
        var container = fixture.NewContainerName();

        // More retries than the proxy ever injects in a row, so no fault may surface.
        var options = AzuriteFixture.FastRetryOptions(maxRetries: SeededFaults.MaxFaultsPerRequest + 2);
        await using var device = await fixture.Connect(options, viaPort: proxy.Port)
            .OpenDeviceAsync(container, "faulty", CapacityBytes);

        var random = new Random(seed);
        var model = new byte[CapacityBytes];
        try
        {
            // Writes in waves of disjoint ranges, run concurrently; sizes from one sector to 5 MiB (split into two Put
            // Page calls).
            for (var wave = 0; wave < 6; wave++)
            {
                var writes = new List<Task>();
                var cursor = random.Next(0, 64) * (long)Sector;
                while (writes.Count < 8)
                {
                    var sectors = random.Next(4) == 0 ? random.Next(256, 1281) : random.Next(1, 33);
                    if (cursor + ((long)sectors * Sector) > CapacityBytes)
                    {
                        break;
                    }

                    var data = new byte[sectors * Sector];
                    random.NextBytes(data);
                    data.CopyTo(model, cursor);
                    writes.Add(device.WriteAsync(cursor, data).AsTask());
                    cursor += (long)(sectors + random.Next(0, 16)) * Sector;
                }

                await Task.WhenAll(writes);
            }

            // Reads through the faulty proxy, in pieces of random size, and straight from Azurite.
            var throughProxy = new byte[CapacityBytes];
            for (long offset = 0; offset < CapacityBytes;)
            {
                var length = (int)Math.Min(CapacityBytes - offset, random.Next(1, 1500) * (long)Sector);
                await device.ReadAsync(offset, throughProxy.AsMemory((int)offset, length));
                offset += length;
            }

            await using var direct = await fixture.Connect().OpenDeviceAsync(container, "faulty");
            var stored = new byte[CapacityBytes];
            await direct.ReadAsync(0, stored);

            Assert.True(model.AsSpan().SequenceEqual(stored), "the blob differs from what was written");
            Assert.True(
                model.AsSpan().SequenceEqual(throughProxy),
                "reads through the faulty proxy differ from what was written");
            foreach (ProxyFault fault in Enum.GetValues<ProxyFault>())
            {
                output.WriteLine($"{fault}: {proxy.Count(fault)}");
                Assert.True(
                    proxy.Count(fault) > 0, $"the proxy never injected {fault}; the test would not show it is retried");
            }
        }
        catch
        {
            output.WriteLine($"FAILED with seed {seed}");
            throw;
        }
    }

    [Fact]
    public async Task PersistentThrottling_FailsWithBlockDeviceException_AfterExactlyTheConfiguredRetries()
    {
        var container = fixture.NewContainerName();
        await using (await fixture.Connect().OpenDeviceAsync(container, "busy", CapacityBytes))
        {
        }

        // Every Put Page is throttled; the open's own requests pass.
        await using var proxy = new FaultProxy(
            fixture.Azurite.Port, r => r.Target.Contains(
                "comp=page", StringComparison.Ordinal) ? ProxyFault.ServerBusy503 : ProxyFault.None);
        const int maxRetries = 3;
        await using var device = await fixture.Connect(AzuriteFixture.FastRetryOptions(maxRetries), viaPort: proxy.Port)
            .OpenDeviceAsync(container, "busy");

        var before = proxy.Count(ProxyFault.ServerBusy503);
        var error = await Assert.ThrowsAsync<BlockDeviceException>(
            () => device.WriteAsync(0, new byte[Sector]).AsTask());
        Assert.Equal(device.Name, error.DeviceName);
        Assert.Equal(503, Assert.IsType<RequestFailedException>(error.InnerException).Status);
        Assert.Equal(maxRetries + 1, proxy.Count(ProxyFault.ServerBusy503) - before);
    }

    [Fact]
    public async Task WriteIfMatch_WhoseAcknowledgementWasLost_IsReportedWritten()
    {
        var container = fixture.NewContainerName();
        ETag etag;
        await using (var setup = await fixture.Connect().OpenDeviceAsync(container, "superblock", CapacityBytes))
        {
            etag = await setup.GetETagAsync();
        }

        // The first Put Page reaches Azurite, which applies it; its answer is lost, so the SDK retries
        // with the old ETag and meets 412. The device must see that its own data is in place.
        var puts = 0;
        await using var proxy = new FaultProxy(fixture.Azurite.Port, r =>
            r.Method == "PUT"
                && r.Target.Contains("comp=page", StringComparison.Ordinal)
                && Interlocked.Increment(ref puts) == 1
                ? ProxyFault.LoseResponse
                : ProxyFault.None);
        await using var device = await fixture.Connect(viaPort: proxy.Port).OpenDeviceAsync(container, "superblock");

        var superblock = new byte[Sector];
        new Random(42).NextBytes(superblock);
        ConditionalWriteResult result = await device.WriteIfMatchAsync(0, superblock, etag);

        Assert.Equal(1, proxy.Count(ProxyFault.LoseResponse));
        Assert.True(result.Written);
        var back = new byte[Sector];
        Assert.Equal(result.ETag, await device.ReadWithETagAsync(0, back));
        Assert.Equal(superblock, back);
    }

    [Fact]
    public async Task ReadCutOffMidBody_WhileAnotherSiloWritesElsewhere_IsResumed_AndReturnsTheRightBytes()
    {
        var container = fixture.NewContainerName();
        const int readBytes = 256 * 1024;
        var expected = new byte[readBytes];
        new Random(21).NextBytes(expected);
        await using var otherSilo = await fixture.Connect().OpenDeviceAsync(container, "shared", CapacityBytes);
        await otherSilo.WriteAsync(0, expected);

        // The first download is cut inside its body; before that, another silo writes elsewhere in the
        // blob, so the blob's ETag changed under the download. The resumed (or restarted, if the service
        // refuses the resume with 412) read must still return exactly the bytes of the range.
        var gets = 0;
        await using var proxy = new FaultProxy(fixture.Azurite.Port, r =>
        {
            if (r.Method != "GET" || Interlocked.Increment(ref gets) != 1)
            {
                return ProxyFault.None;
            }

            otherSilo.WriteAsync(CapacityBytes - Sector, new byte[Sector]).AsTask().GetAwaiter().GetResult();
            return ProxyFault.DropMidResponse;
        }, cutAfterBytes: 64 * 1024);
        await using var device = await fixture.Connect(viaPort: proxy.Port).OpenDeviceAsync(container, "shared");

        var back = new byte[readBytes];
        await device.ReadAsync(0, back);

        output.WriteLine($"GET requests: {gets}");
        Assert.Equal(1, proxy.Count(ProxyFault.DropMidResponse));
        Assert.True(gets >= 2, $"only {gets} GET requests: the cut-off read was not resumed or restarted");
        Assert.True(expected.AsSpan().SequenceEqual(back));
    }

    [Fact]
    public async Task MaxInFlightIo_BoundsTheRequestsOnTheWire()
    {
        const int maxInFlight = 3;
        var container = fixture.NewContainerName();
        await using (await fixture.Connect().OpenDeviceAsync(container, "bounded", CapacityBytes))
        {
        }

        // Holding each request makes unbounded concurrency visible at the proxy.
        await using var proxy = new FaultProxy(
            fixture.Azurite.Port, _ => ProxyFault.None, holdBeforeForward: TimeSpan.FromMilliseconds(20));
        var options = AzuriteFixture.FastRetryOptions();
        options.MaxInFlightIo = maxInFlight;
        await using var device = await fixture.Connect(options, viaPort: proxy.Port)
            .OpenDeviceAsync(container, "bounded");

        var io = new List<Task>();
        for (var i = 0; i < 24; i++)
        {
            io.Add(device.WriteAsync(i * 2L * Sector, new byte[Sector]).AsTask());
            io.Add(device.ReadAsync(((i * 2L) + 1) * Sector, new byte[Sector]).AsTask());
        }

        // One 12 MiB write is split into three Put Page calls that share the same bound.
        io.Add(device.WriteAsync(4L * 1024 * 1024, new byte[12 * 1024 * 1024]).AsTask());
        await Task.WhenAll(io);

        output.WriteLine($"most requests at the proxy at once: {proxy.MaxConcurrentRequests}");
        Assert.InRange(proxy.MaxConcurrentRequests, 1, maxInFlight);
    }

    [Fact]
    public async Task StoppedService_FailsReadsAndWritesWithBlockDeviceException()
    {
        await using var azurite = await AzuriteInstance.StartAsync();
        var connection = PageBlobConnection.FromConnectionString(
            azurite.ConnectionString(), AzuriteFixture.FastRetryOptions());
        await using var device = await connection.OpenDeviceAsync("stopping", "disk", CapacityBytes);
        await device.WriteAsync(0, new byte[Sector]);

        azurite.Stop();

        var write = await Assert.ThrowsAsync<BlockDeviceException>(
            () => device.WriteAsync(Sector, new byte[Sector]).AsTask());
        var read = await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(0, new byte[Sector]).AsTask());
        Assert.Contains("after the SDK's retries", write.Message);
        Assert.Equal(device.Name, read.DeviceName);
        output.WriteLine(write.Message);
    }

    [Fact]
    public async Task DeletedBlob_FailsReadsAndWritesWithBlockDeviceException_NamingTheBlobAsGone()
    {
        var connection = fixture.Connect();
        var container = fixture.NewContainerName();
        await using var device = await connection.OpenDeviceAsync(container, "doomed", CapacityBytes);
        await device.WriteAsync(0, new byte[Sector]);

        await connection.GetPageBlobClient(container, "doomed").DeleteAsync();

        var write = await Assert.ThrowsAsync<BlockDeviceException>(
            () => device.WriteAsync(0, new byte[Sector]).AsTask());
        var read = await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(0, new byte[Sector]).AsTask());
        Assert.Contains("gone", write.Message);
        Assert.Contains("gone", read.Message);
        Assert.Equal(404, Assert.IsType<RequestFailedException>(read.InnerException).Status);
    }

    [Fact]
    public async Task DeletedContainer_FailsIoWithBlockDeviceException()
    {
        var connection = fixture.Connect();
        var container = fixture.NewContainerName();
        await using var device = await connection.OpenDeviceAsync(container, "doomed", CapacityBytes);

        await connection.GetContainerClient(container).DeleteAsync();

        var error = await Assert.ThrowsAsync<BlockDeviceException>(
            () => device.WriteAsync(0, new byte[Sector]).AsTask());
        Assert.Contains("gone", error.Message);
    }
}
