using System.Runtime.ExceptionServices;

namespace Cloud.Storage.Devices;

/// <summary>
/// Group commit for one device's flush: one flush runs at a time, and the callers that arrive while it runs share the
/// next one, which starts after all of them arrived and so covers every write they completed before asking. Concurrent
/// durable writes to one member then cost one or two flushes between them instead of one each, and at most one thread
/// per device is blocked in the flush call.
/// </summary>
/// <remarks>
/// A caller whose flush failed gets that failure, never the success of a later flush: Linux may clear the failed
/// pages' dirty state, so a later flush says nothing about the writes the failed one covered.
/// </remarks>
/// <param name="flush">The blocking flush (for a file, <c>fdatasync</c>); run on a thread-pool thread, or on the caller's
/// for <see cref="Flush"/>.</param>
public sealed class FlushCoalescer(Action flush)
{
    private readonly SemaphoreSlim _turn = new(1, 1);
    private long _requests;
    private long _flushedThrough;
    private (long Through, Exception Error)? _failure;
    private long _flushes;

    /// <summary>Flushes started so far (for tests and metrics).</summary>
    public long Flushes => Interlocked.Read(ref _flushes);

    /// <summary>
    /// Returns once a flush that started after this call completed, or throws that flush's failure (the exception
    /// <c>flush</c> threw).
    /// </summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var ticket = Interlocked.Increment(ref _requests);
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Settled(ticket)) return;
            var covers = Interlocked.Read(ref _requests);
            await Task.Run(() => Run(covers), CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>
    /// <see cref="FlushAsync"/> on the calling thread, blocked for the flush (and for one already running): for a
    /// caller with a thread of its own to spend, which saves the hop to the thread pool.
    /// </summary>
    public void Flush()
    {
        var ticket = Interlocked.Increment(ref _requests);
        _turn.Wait();
        try
        {
            if (!Settled(ticket)) Run(Interlocked.Read(ref _requests));
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>
    /// Runs one flush, under the turn, that covers every request numbered up to <paramref name="covers"/> (each arrived,
    /// its writes completed, before the flush starts), and records its outcome for them.
    /// </summary>
    private void Run(long covers)
    {
        Interlocked.Increment(ref _flushes);
        try
        {
            flush();
        }
        catch (Exception e)
        {
            _failure = (covers, e);
            throw;
        }
        Volatile.Write(ref _flushedThrough, covers);
    }

    /// <summary>
    /// True when a flush that started after request <paramref name="ticket"/> has completed; throws the failure of one
    /// that covered it.
    /// </summary>
    private bool Settled(long ticket)
    {
        // Rethrown as awaiting a shared faulted task would: the same exception, this caller's stack appended.
        if (_failure is { } failed && ticket <= failed.Through) ExceptionDispatchInfo.Throw(failed.Error);
        return Volatile.Read(ref _flushedThrough) >= ticket;
    }
}
