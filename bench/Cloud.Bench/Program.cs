using BenchmarkDotNet.Running;
using Cloud.Bench.Parity;

if (args is ["paired", ..])
{
    PairedParityRun.Run(Console.Out);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
