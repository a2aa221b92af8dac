namespace Cloud.Cli;

/// <summary>
/// cloudctl's exit codes, for scripts. Every command's <c>--help</c> lists the ones it returns (<see cref="Help"/>),
/// and the README's cloudctl section lists them all.
/// </summary>
internal static class ExitCodes
{
    /// <summary>The command did what it was asked.</summary>
    public const int Ok = 0;

    /// <summary>The service refused the request or failed it (or could not be reached); one line on stderr says why.</summary>
    public const int Failed = 1;

    /// <summary>Bad usage: the command line was refused before any request was sent.</summary>
    public const int Usage = 2;

    /// <summary>
    /// <c>scrub</c> found problems it did not repair: mismatches or checksum errors without <c>--repair</c>, or stripes
    /// that <c>--repair</c> could not put right.
    /// </summary>
    public const int ScrubUnrepaired = 3;

    /// <summary>The exit codes every command returns, as its help shows them.</summary>
    public const string Help = "Exit codes: 0 ok; 1 the service refused or failed the request; 2 bad usage.";

    /// <summary>The exit codes of <c>scrub</c>, as its help shows them.</summary>
    public const string ScrubHelp =
        "Exit codes: 0 ok (nothing wrong, or everything found repaired); 1 the service refused or failed the request; "
        + "2 bad usage; 3 problems found and not repaired (mismatches or checksum errors without --repair, or stripes "
        + "--repair could not put right).";
}
