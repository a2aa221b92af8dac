using System.Collections.Concurrent;
using System.Diagnostics;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Tests;

/// <summary>
/// Counts the first servers' delegation decisions (decision and reason) for the writes of one volume, from the
/// "delegate" spans that carry them.
/// </summary>
/// <remarks>
/// Listeners are process-wide, and this assembly runs other clusters beside the shared one: FailoverTests' slowed
/// target makes its own first servers choose new targets as "target-overloaded", at any moment of a test here. The
/// "cloud.delegation.decisions" meter carries no volume, so a recorder on it counted those too (FixedTargetTests failed
/// in CI with one such decision against its expected 0); the spans name the volume, which each test makes unique.
/// </remarks>
internal sealed class DecisionRecorder : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentDictionary<(string Decision, string Reason), long> _counts = new();

    public DecisionRecorder(string volumeName)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == CloudTracing.SourceName,
            Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStopped = activity =>
            {
                if (activity.OperationName == CloudTracing.Delegate
                    && activity.GetTagItem("cloud.volume") as string == volumeName
                    && activity.GetTagItem("cloud.decision") is string decision)
                {
                    var reason = activity.GetTagItem("cloud.reason") as string ?? "";
                    _counts.AddOrUpdate((decision, reason), 1, (_, count) => count + 1);
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public long Count(string decision, string reason) => _counts.GetValueOrDefault((decision, reason));

    public override string ToString()
        => string.Join(", ", _counts.Select(kv => $"{kv.Key.Decision}/{kv.Key.Reason}={kv.Value}"));

    public void Dispose() => _listener.Dispose();
}
