using System.Net;
using System.Net.Sockets;
using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// What a new deployment gets wrong first (another host's address, a taken port, a database without the schema or
/// out of reach) ends in one line that says what to do, and exit code 2, never a stack trace; and the address a silo
/// advertises is the one it was given.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class SiloStartTests(PostgresFixture postgres) : IClassFixture<PostgresFixture>
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(90);

    private static string SiloDll => Repository.BuiltAssembly("silo", "Cloud.Silo.dll");

    private static async Task<(int Code, string Output)> RunToExitAsync(
        IEnumerable<string> args,
        Dictionary<string, string>? environment = null)
    {
        await using var silo = ChildProcess.StartDotnet("silo", SiloDll, ["--nbd-port", "0", .. args], environment);
        // A silo that does not exit is a test failure (a TimeoutException carrying its output).
        var code = await silo.ExitAsync(ExitTimeout);
        return (code, silo.Output);
    }

    private static void AssertOneLineError(string output, string expected)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var error = Assert.Single(lines, l => l.StartsWith("cloud-silo: ", StringComparison.Ordinal));
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain(lines, l => l.StartsWith("at ", StringComparison.Ordinal));
        Assert.DoesNotContain("Exception", output, StringComparison.Ordinal);
    }

    private static string[] Ports()
    {
        var p = FreePorts.Next(2);
        return ["--silo-port", p[0].ToString(), "--gateway-port", p[1].ToString()];
    }

    [Fact]
    public async Task AddressOfAnotherHost_IsRefusedInOneLine()
    {
        var connection = await postgres.CreateDatabaseAsync("addr");
        // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
        var (code, output) = await RunToExitAsync(
            ["--clustering", "postgres", "--connection", connection, "--init-schema", "--address", "192.0.2.123",
                .. Ports()]);
        Assert.Equal(2, code);
        AssertOneLineError(output, "--address 192.0.2.123 is not an address of this host");
    }

    [Fact]
    public async Task AddressThatIsNoAddress_IsRefusedInOneLine()
    {
        var (code, output) = await RunToExitAsync(["--address", "host-one", .. Ports()]);
        Assert.Equal(2, code);
        AssertOneLineError(output, "--address 'host-one' is not an IP address");
    }

    [Theory]
    [InlineData("Cloud__PartialParityLog", "maybe", "'maybe' at 'Cloud:PartialParityLog' to type 'System.Boolean'")]
    [InlineData("Cloud__HostDownRebuildDelay", "soon", "'soon' at 'Cloud:HostDownRebuildDelay' to type 'System.TimeSpan'")]
    public async Task SettingOfTheWrongType_IsRefusedInOneLineNamingIt(string variable, string value, string expected)
    {
        var (code, output) = await RunToExitAsync(Ports(), new() { [variable] = value });
        Assert.Equal(2, code);
        AssertOneLineError(output, expected);
    }

    [Fact]
    public async Task NonLoopbackAddress_WithLocalhostClustering_IsRefused()
    {
        var (code, output) = await RunToExitAsync(["--address", "127.0.0.40", .. Ports()]);
        Assert.Equal(2, code);
        AssertOneLineError(output, "needs --clustering postgres");
    }

    [Fact]
    public async Task SiloPortInUse_IsRefusedInOneLine()
    {
        using var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var taken = ((IPEndPoint)holder.LocalEndpoint).Port;
        var (code, output) = await RunToExitAsync(
            ["--silo-port", taken.ToString(), "--gateway-port", FreePorts.Next().ToString(),
                "--data", Directory.CreateTempSubdirectory("cloud-port-").FullName]);
        Assert.Equal(2, code);
        AssertOneLineError(output, $"--silo-port {taken}: 127.0.0.1:{taken} is already in use");
    }

    [Fact]
    public async Task DatabaseWithoutSchema_IsRefusedWithTheCommandThatAppliesIt()
    {
        var connection = await postgres.CreateDatabaseAsync("noschema");
        var (code, output) = await RunToExitAsync(["--clustering", "postgres", "--connection", connection, .. Ports()]);
        Assert.Equal(2, code);
        AssertOneLineError(
            output, "has no Cloud schema (no table 'orleansquery'); start one silo once with --init-schema");
        Assert.DoesNotContain("relation", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnreachableDatabase_IsRefusedInOneLine()
    {
        var port = FreePorts.Next();
        var (code, output) = await RunToExitAsync(
            ["--clustering", "postgres",
                "--connection", $"Host=127.0.0.1;Port={port};Database=cloud;Username=cloud;Password=hunter2;Timeout=3",
                .. Ports()]);
        Assert.Equal(2, code);
        AssertOneLineError(output, $"cannot use PostgreSQL at 127.0.0.1:{port}, database 'cloud'");
        Assert.DoesNotContain("hunter2", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddressAuto_TakesThePlatformsAddress_AndAdvertisesIt()
    {
        var connection = await postgres.CreateDatabaseAsync("auto");
        var ports = FreePorts.Next(2);
        await using var silo = ChildProcess.StartDotnet("silo", SiloDll,
            ["--clustering", "postgres", "--connection", connection, "--init-schema", "--address", "auto", "--name",
                "auto1", "--nbd-port", "0",
             "--silo-port", ports[0].ToString(), "--gateway-port", ports[1].ToString(),
             "--data", Directory.CreateTempSubdirectory("cloud-auto-").FullName],
            new Dictionary<string, string> { ["CLOUD_HOST_ADDRESS"] = "127.0.0.41" });
        await silo.WaitForOutputAsync("Cloud silo 'auto1' up", Cloud.HostBed.HostBed.StartTimeout);
        Assert.Contains($"gateway 127.0.0.41:{ports[1]}", silo.Output, StringComparison.Ordinal);
        Assert.Contains("advertised address 127.0.0.41", silo.Output, StringComparison.Ordinal);
        await using var client = await Cloud.Client.CloudClient.ConnectAsync($"127.0.0.41:{ports[1]}");
        var status = await client.GetClusterStatusAsync();
        Assert.Contains(status.Silos, s => s.SiloName == "auto1");
    }
}
