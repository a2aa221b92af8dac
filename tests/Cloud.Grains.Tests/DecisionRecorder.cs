using System.Collections.Concurrent;
using System.Diagnostics;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Tests;

/// <summary>
/// Counts the first servers' delegation decisions (decision and reason) for the writes of one volume, from the
/// "delegate" spans that carry them.
/// </summary>
/// <remarks>
/// Listeners are process-wide, and decisions are made here all the time for other volumes: by this assembly's other
/// clusters (FailoverTests slows a target and kills it) and by earlier tests' writes still settling on the shared
/// one. The "cloud.delegation.decisions" meter names no volume, so a recorder on it counted those too:
/// FixedTargetTests failed in CI with one "new/target-overloaded" decision, which its own writes cannot make (a
/// fixed target is never judged by its load). The spans name the volume, and each test makes its own.
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
