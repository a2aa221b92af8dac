using BenchmarkDotNet.Running;
using Cloud.Bench.Parity;
using Cloud.Bench.Volumes;

if (args is ["paired", ..])
{
    PairedParityRun.Run(Console.Out);
    return;
}
if (args is ["cpu", ..])
{
    if (PairedCpuRun.Parse(args[1..], out var error) is not var (rounds, seconds, inFlight, buffers))
    {
        Console.Error.WriteLine(error);
        Environment.Exit(2);
        return;
    }
    await PairedCpuRun.RunAsync(Console.Out, rounds, seconds, inFlight, buffers);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
