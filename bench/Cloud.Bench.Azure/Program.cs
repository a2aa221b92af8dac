using BenchmarkDotNet.Running;
using Cloud.Bench.Azure;

// One Azurite for the whole run: BenchmarkDotNet runs each case in a child process, and the
// children find this Azurite through an environment variable they inherit, so the device and
// the raw SDK calls are measured against the same service.
await using var azurite = await BenchAzurite.StartAsync();
Environment.SetEnvironmentVariable(BenchAzurite.PortVariable, azurite.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
BenchmarkSwitcher.FromAssembly(typeof(PageBlobBenchmarks).Assembly).Run(args);
