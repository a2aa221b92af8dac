using Cloud.Nbd;
using Cloud.NbdHost;
using Cloud.Storage.Devices;
using Cloud.Storage.Volumes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// A small console host that serves one volume over NBD without Orleans, for bench/nbd.sh and manual tests.
//
//   Cloud.NbdHost --dir DIR [--layout raid5|file] [--members 5] [--member-bytes N] [--chunk-bytes 65536]
//                 [--name vol] [--address 127.0.0.1] [--port 0]
//
// Port 0 binds a free port. Once listening it prints "NBD_URI=nbd://address:port/name" on stdout.

var opts = ParseArgs(args);
var dir = opts.GetValueOrDefault("dir")
    ?? throw new ArgumentException("--dir DIR is required: the directory that holds the member files.");
var layout = opts.GetValueOrDefault("layout") ?? "raid5";
var members = int.Parse(opts.GetValueOrDefault("members") ?? "5");
var memberBytes = long.Parse(opts.GetValueOrDefault("member-bytes") ?? (512L << 20).ToString());
var chunkBytes = int.Parse(opts.GetValueOrDefault("chunk-bytes") ?? (64 << 10).ToString());
var name = opts.GetValueOrDefault("name") ?? "vol";
var address = opts.GetValueOrDefault("address") ?? NbdServerOptions.DefaultAddress;
var port = int.Parse(opts.GetValueOrDefault("port") ?? "0");
Directory.CreateDirectory(dir);

IBlockVolume volume = await BenchVolumes.CreateAsync(layout, dir, name, members, memberBytes, chunkBytes);

var builder = Host.CreateApplicationBuilder();
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Services.AddSingleton<INbdExportResolver>(new SingleVolumeResolver(volume));
builder.Services.AddNbdServer(o =>
{
    o.Address = address;
    o.Port = port == 0 ? NbdServerOptions.AnyFreePort : port;
});
using var host = builder.Build();
await host.StartAsync();
var server = host.Services.GetRequiredService<NbdServer>();
Console.WriteLine($"NBD_URI=nbd://{server.TcpEndPoint!.Address}:{server.TcpEndPoint.Port}/{name}");
Console.WriteLine(
    $"serving {layout} volume '{name}': {volume.CapacityBytes} bytes, preferred I/O {volume.PreferredIoSizeBytes} bytes");
await host.WaitForShutdownAsync();
if (volume is IAsyncDisposable d)
{
    await d.DisposeAsync();
}

static Dictionary<string, string> ParseArgs(string[] args)
{
    var d = new Dictionary<string, string>();
    for (var i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
        {
            throw new ArgumentException($"argument '{args[i]}' is not '--name value'");
        }
        d[args[i][2..]] = args[++i];
    }
    return d;
}

/// <summary>Serves exactly one volume; the empty export name selects it too.</summary>
internal sealed class SingleVolumeResolver(IBlockVolume volume) : INbdExportResolver
{
    public ValueTask<IBlockVolume?> OpenAsync(string exportName, CancellationToken ct)
        => ValueTask.FromResult(exportName == volume.Name ? volume : null);

    public ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct)
        => ValueTask.FromResult<IReadOnlyList<string>>([volume.Name]);
}
