using Microsoft.Extensions.Diagnostics.HealthChecks;
using Orleans.Runtime;

namespace Cloud.Silo;

/// <summary>
/// Ready when this silo is an active member of its cluster (it can serve grains, so clients and NBD work).
/// </summary>
internal sealed class SiloHealthCheck(ILocalSiloDetails silo, IClusterMembershipService membership) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(
        HealthCheckContext context,
        CancellationToken cancellationToken = default)
    {
        var status = membership.CurrentSnapshot.GetSiloStatus(silo.SiloAddress);
        return Task.FromResult(status == SiloStatus.Active
            ? HealthCheckResult.Healthy($"silo {silo.Name} is active")
            : HealthCheckResult.Unhealthy($"silo {silo.Name} is {status}"));
    }
}
