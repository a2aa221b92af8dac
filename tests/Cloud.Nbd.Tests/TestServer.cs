using System.Net;
using Cloud.Storage.Volumes;
using Microsoft.Extensions.Options;

namespace Cloud.Nbd.Tests;

/// <summary>An <see cref="NbdServer"/> on 127.0.0.1 and a free port, stopped on dispose.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private TestServer(NbdServer server, MapResolver resolver)
    {
        Server = server;
        Resolver = resolver;
    }

    public NbdServer Server { get; }
    public MapResolver Resolver { get; }
    public IPEndPoint EndPoint => Server.TcpEndPoint!;
    public int Port => EndPoint.Port;

    public static async Task<TestServer> StartAsync(Action<NbdServerOptions>? configure, params IBlockVolume[] volumes)
    {
        var options = new NbdServerOptions
        {
            Port = NbdServerOptions.AnyFreePort,
            HandshakeTimeout = TimeSpan.FromSeconds(20)
        };
        configure?.Invoke(options);
        var resolver = new MapResolver(volumes);
        var server = new NbdServer(resolver, Options.Create(options));
        await server.StartAsync();
        return new TestServer(server, resolver);
    }

    public static Task<TestServer> StartAsync(params IBlockVolume[] volumes) => StartAsync(null, volumes);

    public string Uri(string export) => $"nbd://127.0.0.1:{Port}/{export}";

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}
