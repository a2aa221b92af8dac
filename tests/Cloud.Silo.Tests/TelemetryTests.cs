using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using Cloud.Grains.Hosting;
using Cloud.Nbd;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Cloud.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Hosting;

namespace Cloud.Silo.Tests;

/// <summary>
/// The silo's health endpoints and the "Cloud" meter, in an in-process host wired as Program.cs wires it.
/// </summary>
public sealed class TelemetryTests
{
    [Fact]
    public async Task HealthAnswers_AndTheCloudMeterReportsIoLockWaitsAndQueueDepth_AfterAnNbdWrite()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        using var dir = new TempDirectory();
        var ports = FreePorts.Next(3);
        var builder = WebApplication.CreateBuilder(
            new WebApplicationOptions { Args = [], EnvironmentName = "Production" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Cloud:DataDirectory"] = dir.Path,
            ["Nbd:Port"] = NbdServerOptions.AnyFreePort.ToString(CultureInfo.InvariantCulture),
            ["Http:Port"] = ports[2].ToString(CultureInfo.InvariantCulture),
        });
        builder.UseOrleans(orleans =>
        {
            orleans.UseLocalhostClustering(
                ports[0], ports[1], serviceId: "telemetry-test", clusterId: "telemetry-test");
            orleans.AddCloud();
        });
        builder.AddCloudEndpoints();

        using var listener = new CloudMeterListener();
        await using var app = builder.Build();
        await app.StartAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports[2]}") };
            var health = await http.GetAsync("/health");
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            Assert.Equal("Healthy", await health.Content.ReadAsStringAsync());
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/alive")).StatusCode);

            var client = new CloudClient(app.Services.GetRequiredService<IClusterClient>());
            await client.CreateVolumeAsync(
                new VolumeSpec("metered", 16 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
            var nbd = app.Services.GetRequiredService<NbdServer>().TcpEndPoint!;
            var run = await Tools.RunAsync(
                qemuIo,
                ["-f", "raw", "-c", "write -P 0x5c 0 1M", "-c", "flush", "-c", "read -P 0x5c 0 1M", $"nbd://{nbd}/metered"]);
            run.AssertSuccess("qemu-io");

            listener.RecordObservableInstruments();
            // Other tests in this process may add to the static meter; what this test did is a lower bound.
            Assert.True(listener.Sum("cloud.io.operations", "op", "write") >= 1, listener.Describe());
            Assert.True(listener.Sum("cloud.io.bytes", "op", "write") >= 1 << 20, listener.Describe());
            Assert.True(listener.Sum("cloud.io.bytes", "op", "read") >= 1 << 20, listener.Describe());
            Assert.True(listener.Count("cloud.io.duration", "op", "flush") >= 1, listener.Describe());
            Assert.True(listener.Count("cloud.lock.wait", "mode", "exclusive") >= 1, listener.Describe());
            Assert.True(listener.Count("cloud.lock.wait", "mode", "shared") >= 1, listener.Describe());
            Assert.True(listener.Sum("cloud.delegation.decisions") >= 1, listener.Describe());
            Assert.True(listener.Count("cloud.worker.queue_depth") >= 1, listener.Describe());
        }
        finally
        {
            await app.StopAsync();
        }
    }

    /// <summary>Collects every measurement of the "Cloud" meter: name, tags, value.</summary>
    private sealed class CloudMeterListener : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<(string Name, KeyValuePair<string, object?>[] Tags, double Value)>
            _measurements = new();

        public CloudMeterListener()
        {
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "Cloud") l.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>(
                (i, v, tags, _) => _measurements.Enqueue((i.Name, tags.ToArray(), v)));
            _listener.SetMeasurementEventCallback<int>(
                (i, v, tags, _) => _measurements.Enqueue((i.Name, tags.ToArray(), v)));
            _listener.SetMeasurementEventCallback<double>(
                (i, v, tags, _) => _measurements.Enqueue((i.Name, tags.ToArray(), v)));
            _listener.Start();
        }

        public void RecordObservableInstruments() => _listener.RecordObservableInstruments();

        private IEnumerable<double> Values(string name, string? tag, string? value) =>
            _measurements.Where(
                m => m.Name == name && (tag is null || m.Tags.Any(t => t.Key == tag && Equals(t.Value, value))))
                .Select(m => m.Value);

        public double Sum(string name, string? tag = null, string? value = null) => Values(name, tag, value).Sum();

        public int Count(string name, string? tag = null, string? value = null) => Values(name, tag, value).Count();

        public string Describe()
            => "measured: " + string.Join(
                ", ", _measurements.GroupBy(m => m.Name).Select(g => $"{g.Key} x{g.Count()}"));

        public void Dispose() => _listener.Dispose();
    }
}
