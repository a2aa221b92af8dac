namespace Cloud.Grains.RaidWorkers;

/// <summary>
/// Wakes the copies waiting for room in the RAID worker's queue when a copy finishes. Unlike a semaphore released
/// on every finish, it stores nothing when no one waits: a raise with no waiter is forgotten, so permits cannot pile
/// up and make later waits return at once while the queue is still full (a wait loop that spins).
/// </summary>
/// <remarks>
/// A waiter takes <see cref="NextAsync"/> before it checks for room, and awaits it only when there is none: a raise
/// between the check and the await then still wakes it, so no wake-up is lost.
/// </remarks>
internal sealed class AdmissionSignal
{
    private readonly Lock _gate = new();
    private TaskCompletionSource _next = NewSource();
    private bool _awaited;

    /// <summary>A task that completes at the next <see cref="Raise"/> after this call.</summary>
    public Task NextAsync()
    {
        lock (_gate)
        {
            _awaited = true;
            return _next.Task;
        }
    }

    /// <summary>Wakes every current waiter; without waiters, does nothing (and allocates nothing).</summary>
    public void Raise()
    {
        TaskCompletionSource raised;
        lock (_gate)
        {
            if (!_awaited) return;
            raised = _next;
            _next = NewSource();
            _awaited = false;
        }
        raised.TrySetResult();
    }

    private static TaskCompletionSource NewSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
