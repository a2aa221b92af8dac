using Cloud.Nbd;
using Microsoft.Extensions.Configuration;

namespace Cloud.Silo.Nbd;

/// <summary>
/// Checks the NBD settings (section <c>Nbd</c>, the <c>--nbd-*</c> flags) before the host starts: a bad value, a
/// missing key file or a malformed PSK file is then one line each, where the host would log a stack trace first.
/// </summary>
internal static class NbdSettings
{
    /// <summary>Every problem with the NBD settings, or null when they are valid.</summary>
    public static IReadOnlyList<string>? Check(IConfiguration configuration)
    {
        var options = new NbdServerOptions();
        try
        {
            configuration.GetSection(SiloEndpoints.NbdSectionName).Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            // A value of the wrong type, e.g. --nbd-tls maybe or --nbd-port x.
            var allowed = ex.Message.Contains(nameof(NbdTlsMode), StringComparison.Ordinal)
                ? " --nbd-tls allows off, on, require."
                : "";
            return [ex.Message + allowed];
        }
        var result = new NbdServerOptionsValidator().Validate(null, options);
        return result.Failed ? [.. result.Failures] : null;
    }
}
