using System.CommandLine;
using Cloud.Cli;

// cloudctl: the Cloud command line. Every command takes --gateway HOST:PORT and --json; an error prints one line
// on stderr and exits non-zero (ExitCodes: 2 for bad usage, 1 for a refused or failed request, and 3 for a scrub that
// left problems unrepaired).
var root = Commands.Build();
var parse = root.Parse(args);
var usage = parse.Errors.Count > 0 ? parse.Errors[0].Message
    : parse.Action is System.CommandLine.Help.HelpAction ? null : Commands.ClusterUsageError(parse);
if (usage is not null)
{
    Console.Error.WriteLine($"cloudctl: {usage} (see 'cloudctl --help')");
    return ExitCodes.Usage;
}
return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
