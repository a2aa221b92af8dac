using System.Globalization;
using Cloud.Grains.Abstractions;
using Cloud.Testing;
using Orleans.Runtime;
using Xunit.Abstractions;

namespace Cloud.Cluster.Tests;

/// <summary>
/// The NBD server of every silo opens an export by asking the volume catalog grain, which lives on one silo. When that
/// silo has just died, the catalog call fails until the cluster declares the death and places the grain anew: a client
/// connecting meanwhile must wait that out, not be refused the export (a kernel client's mount would fail).
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class CatalogLossTests(PostgresFixture postgres, ITestOutputHelper output)
{
    private const string Export = "catalog";

    private void Log(string line) => output.WriteLine(line);

    [Fact]
    public async Task KillingTheCatalogHost_AnNbdClientConnectingAtOnceThroughAnotherSilo_IsServed()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        await using var silos = await SiloProcesses.StartAsync(postgres.Server, "catalog-loss", 3, Log, s => s.EnableNbd());
        await using (var setup = await silos.ConnectToAsync(0))
            await CrashScenario.CreateVolumeAsync(setup, Export);
        var victim = await CatalogHostAsync(silos);
        var reader = (victim + 1) % silos.Count;
        const string Region = "0 1M";
        (await Tools.RunAsync(qemuIo, ["-f", "raw", silos.NbdUri(reader, Export), "-c", $"write -P 0x5c {Region}", "-c", "flush"]))
            .AssertSuccess("qemu-io write before the kill");

        await silos.KillAsync(victim);
        Log($"{SiloProcesses.NameOf(victim)}, host of the catalog, killed; a client connects through {SiloProcesses.NameOf(reader)} at once");

        // One connection, not retried here: its open asks the catalog for the export and its grants.
        var read = await Tools.RunAsync(qemuIo, ["-f", "raw", silos.NbdUri(reader, Export), "-c", $"read -P 0x5c {Region}"]);
        if (read.ExitCode != 0 || read.Output.Contains("Pattern verification failed", StringComparison.Ordinal))
        {
            throw new Xunit.Sdk.XunitException(
                $"the connection right after the catalog's host died failed (exit {read.ExitCode}):\n{read.Output}\n{silos.OutputTails()}");
        }
    }

    /// <summary>The index of the silo where the catalog grain is active (activating it first).</summary>
    private static async Task<int> CatalogHostAsync(SiloProcesses silos)
    {
        await using var client = await silos.ConnectToAsync(0);
        var catalog = client.Cluster.GetGrain<IVolumeCatalogGrain>(0);
        await catalog.ListAsync();
        var host = await client.Cluster.GetGrain<IManagementGrain>(0).GetActivationAddress(catalog);
        var index = host is null ? -1 : silos.IndexOfPort(host.Endpoint.Port);
        return index >= 0
            ? index
            : throw new InvalidOperationException(
                string.Create(CultureInfo.InvariantCulture, $"the catalog grain's silo ({host}) is none of the test's"));
    }
}
