using Cloud.Grains.Abstractions;
using Cloud.Grains.Locks;

namespace Cloud.Grains.Engine;

/// <summary>
/// Turns the storage engine's exceptions into ones every Orleans client can deserialize: the engine knows nothing of
/// Orleans, so its exception types have no codecs, and a caller must still get the engine's message.
/// </summary>
internal static class EngineErrors
{
    public static async Task Guard(Func<Task> action)
    {
        try { await action(); }
        catch (Exception ex) when (NeedsWrapping(ex)) { throw Wrap(ex); }
    }

    public static async Task<T> Guard<T>(Func<Task<T>> action)
    {
        try { return await action(); }
        catch (Exception ex) when (NeedsWrapping(ex)) { throw Wrap(ex); }
    }

    private static bool NeedsWrapping(Exception ex) =>
        ex is not (CloudRequestException or CloudStorageException or LockFencedException or OrleansException
            or TimeoutException or OperationCanceledException);

    private static Exception Wrap(Exception ex) => ex switch
    {
        ArgumentException or InvalidOperationException => new CloudRequestException(ex.Message),
        _ => new CloudStorageException($"{ex.GetType().Name}: {ex.Message}"),
    };
}
