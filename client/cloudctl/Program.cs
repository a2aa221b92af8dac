using System.CommandLine;
using Cloud.Cli;

// cloudctl: the Cloud command line. Every command takes --gateway HOST:PORT and --json; an error prints one line
// on stderr and exits non-zero (2 for bad usage, 1 for a refused or failed request).
var root = Commands.Build();
var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    Console.Error.WriteLine($"cloudctl: {parse.Errors[0].Message} (see 'cloudctl --help')");
    return 2;
}
return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
