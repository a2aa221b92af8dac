using System.Globalization;
using Cloud.HostBed;
using Cloud.Testing;

// The multi-host bed for people: `dotnet run --project tests/Cloud.HostBed -- [--hosts N] [--page-blobs CONNSTRING]`
// (or bench/hosts.sh). Starts PostgreSQL and N hosts, prints how to reach each, and keeps them until Ctrl+C.
var options = new HostBedOptions();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--hosts" when i + 1 < args.Length && int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                            && n is >= 1 and <= HostBedOptions.MaxHosts:
            options.Hosts = n;
            i++;
            break;
        case "--page-blobs" when i + 1 < args.Length:
            options.PageBlobConnectionString = args[++i];
            break;
        case "--help" or "-h":
            Console.WriteLine("usage: Cloud.HostBed [--hosts N (1-32, default 3)] [--page-blobs CONNSTRING]");
            return 0;
        default:
            Console.Error.WriteLine($"hostbed: '{args[i]}' is not allowed; use --hosts N (1-{HostBedOptions.MaxHosts}) and --page-blobs CONNSTRING");
            return 2;
    }
}

await using var postgres = await PostgresServer.StartAsync();
await using var bed = await HostBed.StartAsync(postgres, options, Console.WriteLine);
Console.WriteLine($"PostgreSQL: {bed.ConnectionString}");
foreach (var host in bed.Hosts)
    Console.WriteLine($"{host.Name}: gateway {bed.Gateway(host.Index)}  nbd://{bed.NbdEndPoint(host.Index)}  user {host.User}  data {host.DataDirectory} (pid {bed.ProcessId(host.Index)})");
Console.WriteLine($"cloudctl --gateway {bed.Gateway(0)} --cluster-id {bed.ClusterId} status");
Console.WriteLine("Ctrl+C stops every host and deletes the bed.");
var stop = new TaskCompletionSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.TrySetResult(); };
await stop.Task;
return 0;
