using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Cloud.Storage.Volumes;

// The per-stripe locks, and the scratch rented for the work done under one.
public sealed partial class RaidVolume
{
    /// <summary>
    /// A stripe's lock, held, and a scratch rented for the work done under it. Disposing releases the lock and then
    /// returns the scratch, whose buffer no I/O uses any more by then (every member I/O is awaited before its caller
    /// returns). A struct, so that taking a stripe costs no allocation on the I/O path.
    /// </summary>
    private readonly struct LockedStripe : IDisposable
    {
        private readonly RaidVolume _volume;
        private readonly SemaphoreSlim _gate;

        public LockedStripe(RaidVolume volume, SemaphoreSlim gate)
        {
            _volume = volume;
            _gate = gate;
            Scratch = volume._scratchPool.Rent();
        }

        /// <summary>The scratch for this stripe's work; the caller resets it for the stripe.</summary>
        public StripeScratch Scratch { get; }

        public void Dispose()
        {
            _gate.Release();
            _volume._scratchPool.Return(Scratch);
        }
    }

    /// <summary>
    /// Waits for <paramref name="stripe"/>'s lock and rents a scratch; dispose the result to give both back.
    /// </summary>
    private ValueTask<LockedStripe> LockStripeAsync(long stripe, CancellationToken cancellationToken)
    {
        SemaphoreSlim gate = StripeLock(stripe);
        // An uncontended lock completes at once (SemaphoreSlim hands back a cached task): no state machine.
        Task wait = gate.WaitAsync(cancellationToken);
        return wait.IsCompletedSuccessfully ? new(new LockedStripe(this, gate)) : LockStripeSlowAsync(wait, gate);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<LockedStripe> LockStripeSlowAsync(Task wait, SemaphoreSlim gate)
    {
        await wait.ConfigureAwait(false);
        return new LockedStripe(this, gate);
    }

    /// <summary>
    /// The lock that serialises <paramref name="stripe"/>'s writers: a fixed array of them is shared by stripe number
    /// modulo <see cref="StripeLockCount"/>, so two stripes may share one (a lock held longer, never a lock missed).
    /// </summary>
    private SemaphoreSlim StripeLock(long stripe) => _stripeLocks[(int)(stripe % StripeLockCount)];

    /// <summary>
    /// Debug builds: the caller relies on holding <paramref name="stripe"/>'s lock (someone holds it, at least).
    /// </summary>
    [Conditional("DEBUG")]
    private void AssertStripeLocked(long stripe) =>
        Debug.Assert(StripeLock(stripe).CurrentCount == 0, $"stripe {stripe}'s lock is not held");
}
