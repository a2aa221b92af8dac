using Orleans.Concurrency;

namespace Cloud.Grains.Delegation;

/// <summary>
/// Where a volume's delegation units live together (volume affinity), and which silo they last left.
/// </summary>
/// <param name="Silo">The home's address (<c>SiloAddress.ToParsableString()</c>), or null when none is chosen.</param>
/// <param name="Left">The address of the last home its units were told to leave, or null.</param>
/// <param name="LeftUtc">When they were told to leave <paramref name="Left"/>.</param>
[GenerateSerializer, Immutable, Alias("cloud.VolumeHome")]
public sealed record VolumeHome(
    [property: Id(0)] string? Silo,
    [property: Id(1)] string? Left,
    [property: Id(2)] DateTimeOffset LeftUtc)
{
    /// <summary>No home chosen and none left.</summary>
    public static readonly VolumeHome None = new(null, null, DateTimeOffset.MinValue);
}

/// <summary>
/// One volume's home (key: the volume id, <c>{volumeId:N}</c>). Placement of every unit of the volume asks it, so that
/// every silo places the units on one silo whatever its own load table says; soft state, lost with its silo and then
/// chosen again by the next placement.
/// </summary>
[Alias("cloud.IVolumeHomeGrain")]
public interface IVolumeHomeGrain : IGrainWithStringKey
{
    /// <summary>The current home.</summary>
    [Alias("Get")]
    Task<VolumeHome> GetAsync();

    /// <summary>
    /// Makes <paramref name="proposed"/> the home if the home is still <paramref name="expected"/>; returns the home
    /// after the call, so that of two silos choosing at once both use the first one's choice.
    /// </summary>
    [Alias("Claim")]
    Task<VolumeHome> ClaimAsync(string? expected, string proposed);

    /// <summary>A first server found <paramref name="silo"/> no longer appropriate: it stops being the home.</summary>
    [Alias("Leave")]
    Task LeaveAsync(string silo);
}

/// <summary>Holds one volume's home; every method is one step on the state, so the grain is reentrant.</summary>
[Reentrant]
internal sealed class VolumeHomeGrain(TimeProvider time) : Grain, IVolumeHomeGrain
{
    private VolumeHome _home = VolumeHome.None;

    public Task<VolumeHome> GetAsync() => Task.FromResult(_home);

    public Task<VolumeHome> ClaimAsync(string? expected, string proposed)
    {
        ArgumentException.ThrowIfNullOrEmpty(proposed);
        if (_home.Silo == expected) _home = _home with { Silo = proposed };
        return Task.FromResult(_home);
    }

    public Task LeaveAsync(string silo)
    {
        ArgumentException.ThrowIfNullOrEmpty(silo);
        // Only the current home is left: a unit still on an older home after the volume moved changes nothing here.
        if (_home.Silo == silo) _home = new VolumeHome(null, silo, time.GetUtcNow());
        return Task.CompletedTask;
    }
}
