using Cloud.Grains.Abstractions;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Cloud.Grains.Volumes;

/// <summary>
/// One volume's superblock lease (see <see cref="ISuperblockLeaseGrain"/>). Reentrant: a waiting acquire awaits a
/// TaskCompletionSource, so releases and renewals are served meanwhile; every state change happens between awaits.
/// </summary>
/// <remarks>
/// A grant ends when released, when it is not renewed within its lease, or at once when membership declares the
/// holder's silo dead. Tokens start from the activation's clock ticks, so a later activation (after this grain's
/// silo died) never hands out a token an earlier one used; such a new activation does not know a grant of the old
/// one, so it may overlap a live holder for at most one lease: the engine's merge rules (a failure is sticky) and
/// the conditional superblock writes of page-blob members cover that window.
/// </remarks>
[Reentrant]
internal sealed class SuperblockLeaseGrain(
    IClusterMembershipService membership, TimeProvider time) : Grain, ISuperblockLeaseGrain
{
    /// <summary>Longest grant asked for; a longer one would keep a dead holder's lease too long.</summary>
    public static readonly TimeSpan MaxLease = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Longest single wait of an acquire; the caller asks again, so a lost caller leaves no waiter for long.
    /// </summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(5);

    private long _nextToken;
    private long _token;
    private string? _holder;
    private DateTimeOffset _expires;
    private readonly LinkedList<TaskCompletionSource> _waiters = new();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _nextToken = time.GetUtcNow().UtcTicks;
        return Task.CompletedTask;
    }

    public async Task<long> AcquireAsync(string holderSilo, TimeSpan lease, TimeSpan maxWait)
    {
        ArgumentException.ThrowIfNullOrEmpty(holderSilo);
        if (lease <= TimeSpan.Zero || lease > MaxLease)
            throw new ArgumentOutOfRangeException(
                nameof(lease), lease, $"allowed: more than zero and at most {MaxLease}.");
        if (maxWait < TimeSpan.Zero || maxWait > MaxWait)
            throw new ArgumentOutOfRangeException(nameof(maxWait), maxWait, $"allowed: zero to {MaxWait}.");
        var deadline = time.GetUtcNow() + maxWait;
        while (true)
        {
            if (IsFree())
            {
                _token = ++_nextToken;
                _holder = holderSilo;
                _expires = time.GetUtcNow() + lease;
                return _token;
            }
            var left = Min(deadline, _expires) - time.GetUtcNow();
            if (deadline <= time.GetUtcNow()) return 0;
            // Wake on a release, or when the current grant would expire, or at the deadline; then look again.
            var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var node = _waiters.AddLast(waiter);
            try
            {
                await waiter.Task.WaitAsync(
                    left > TimeSpan.Zero ? Min(left, TimeSpan.FromMilliseconds(250)) : TimeSpan.FromMilliseconds(1), time);
            }
            catch (TimeoutException) { }
            finally { if (node.List is not null) _waiters.Remove(node); }
        }
    }

    public Task<bool> RenewAsync(long token, TimeSpan lease)
    {
        if (lease <= TimeSpan.Zero || lease > MaxLease)
            throw new ArgumentOutOfRangeException(
                nameof(lease), lease, $"allowed: more than zero and at most {MaxLease}.");
        if (token == 0 || token != _token || IsFree()) return Task.FromResult(false);
        _expires = time.GetUtcNow() + lease;
        return Task.FromResult(true);
    }

    public Task ReleaseAsync(long token)
    {
        if (token != 0 && token == _token)
        {
            _token = 0;
            _holder = null;
            // Wake the oldest waiter; a newcomer may still win the race, which is fine for a lock held for a few
            // writes.
            if (_waiters.First is { } first)
            {
                _waiters.RemoveFirst();
                first.Value.TrySetResult();
            }
        }
        return Task.CompletedTask;
    }

    private bool IsFree()
    {
        if (_token == 0) return true;
        if (_expires <= time.GetUtcNow() || IsDead(_holder!))
        {
            _token = 0;
            _holder = null;
            return true;
        }
        return false;
    }

    private bool IsDead(string silo)
    {
        try
        {
            return membership.CurrentSnapshot.GetSiloStatus(SiloAddress.FromParsableString(silo)) == SiloStatus.Dead;
        }
        catch (FormatException) { return false; }
    }

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}
