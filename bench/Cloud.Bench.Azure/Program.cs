using BenchmarkDotNet.Running;
using Cloud.Bench.Azure;

// `paired`: raw SDK calls and the device interleaved in one process against one Azurite (ratio per round).
// Otherwise BenchmarkDotNet; each of its benchmark processes starts its own Azurite (see PageBlobBenchmarks).
if (args.Length > 0 && args[0] == "paired")
{
    return await PairedRun.RunAsync(args[1..]);
}

BenchmarkSwitcher.FromAssembly(typeof(PageBlobBenchmarks).Assembly).Run(args);
return 0;
