using Cloud.Client;
using Cloud.Testing;

namespace Cloud.HostBed;

/// <summary>
/// A write stream through one host alone: a client bound to that host's gateway (so the host is the first server of
/// every write), the volume opened through it, and the stream's writers running until <see cref="StopAsync"/>. The
/// stream (its ledger) belongs to the caller and outlives the writer, so several writers in turn can write one
/// volume and one check covers them all.
/// </summary>
public sealed class HostWriter : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly CloudClient _client;
    private Task _writing = Task.CompletedTask;

    private HostWriter(int host, CloudClient client, CloudVolume volume, WriteStream stream)
    {
        Host = host;
        _client = client;
        Volume = volume;
        Stream = stream;
    }

    /// <summary>The index of the host the writes go through.</summary>
    public int Host { get; }

    /// <summary>The client, bound to <see cref="Host"/>'s gateway.</summary>
    public CloudClient Client => _client;

    /// <summary>The volume, opened through <see cref="Host"/>.</summary>
    public CloudVolume Volume { get; }

    /// <summary>The ledger of the writes.</summary>
    public WriteStream Stream { get; }

    /// <summary>
    /// Connects to host <paramref name="host"/>, opens <paramref name="volumeName"/> and starts writing.
    /// </summary>
    public static async Task<HostWriter> StartAsync(HostBed bed, int host, string volumeName, WriteStream stream)
    {
        ArgumentNullException.ThrowIfNull(bed);
        ArgumentNullException.ThrowIfNull(stream);
        var client = await bed.ConnectToAsync(host).ConfigureAwait(false);
        try
        {
            var volume = await CrashScenario.OpenAsync(client, volumeName).ConfigureAwait(false);
            var writer = new HostWriter(host, client, volume, stream);
            writer._writing = stream.RunAsync(() => volume, writer._stop.Token);
            return writer;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Stops the writers and waits for their writes in flight to end (acknowledged or given up on).</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _writing.ConfigureAwait(false);
    }

    /// <summary>A one-line account of the stream, with its last errors, for failure messages.</summary>
    public string Describe() =>
        $"writer through host {Host + 1} on {Volume.Name} (seed {Stream.Seed}; {Stream.AcknowledgedCount} acknowledged, {Stream.FailedCount} failed); last errors: "
        + string.Join(" | ", Stream.Records.Where(r => !r.Acknowledged).TakeLast(3).Select(r => r.Error));

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stop.Dispose();
        await _client.DisposeAsync().ConfigureAwait(false);
    }
}
