using System.Collections.Concurrent;
using System.Diagnostics;
using Cloud.Grains.Abstractions;
using Cloud.Grains.FirstServers;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Tests;

/// <summary>
/// Traces of the write path (issue 16, item 6): the spans of one write that crosses two silos form one trace, rooted
/// at the first server, with the target's RAID worker batch, its partition-lock calls and its engine write below it,
/// and the engine's member writes below that.
/// Spans are collected in memory by an <see cref="ActivityListener"/>, as OpenTelemetry's exporter would see them.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class TraceTests(SharedClusterFixture fixture)
{
    /// <summary>Orleans' sources: their spans carry the trace across the grain calls between the silos.</summary>
    private static readonly string[] Sources =
        [CloudTracing.SourceName, "Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application"];

    private CloudCluster Cloud => fixture.Cloud;

    [Fact]
    public async Task WriteDelegatedToAnotherSilo_FormsOneTraceFromTheFirstServerToTheTargetsBatchEngineAndMemberWrites()
    {
        var v = await Cloud.Client.CreateVolumeAsync(new VolumeSpec("trace-" + Guid.NewGuid().ToString("N")[..6], 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, false));
        var (firstServer, target) = (Cloud.Silos[0], Cloud.Silos[1]);
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => Sources.Contains(source.Name),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        try
        {
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = target.Name;
            // Through the first server's in-process service, as the NBD server calls it, with no trace around it:
            // the first server's span must start the trace. FUA: the call returns once the target committed.
            Activity.Current = null;
            await Cloud.Service<FirstServerService>(firstServer).WriteAsync(v.Name, 0, Blocks.Pattern(8192, 7), forceUnitAccess: true);
        }
        finally
        {
            foreach (var s in Cloud.Silos) Cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = null;
        }

        var root = Assert.Single(spans, s => s.OperationName == CloudTracing.FirstServerWrite && Tag(s, "cloud.volume") == v.Name);
        Assert.Equal(default, root.ParentSpanId);
        Assert.Equal(firstServer.Name, Tag(root, "cloud.silo"));
        // The batch stops before the commit is reported, so before the FUA write returns; its children stop first.
        var trace = await Eventually.ValueAsync(
            () => Task.FromResult(spans.Where(s => s.TraceId == root.TraceId).ToList()),
            t => t.Exists(s => s.OperationName == CloudTracing.RaidBatch),
            TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(20),
            t => $"no RAID worker batch in the write's trace; its spans: {string.Join(", ", t.Select(s => s.OperationName))}");
        var byId = trace.ToDictionary(s => s.SpanId);

        var batch = Assert.Single(trace, s => s.OperationName == CloudTracing.RaidBatch);
        Assert.Equal(target.Name, Tag(batch, "cloud.silo"));
        var chain = Ancestry(batch, byId);
        Assert.Equal(root, chain[^1]);
        Assert.Contains(chain, s => s.OperationName == CloudTracing.Delegate);
        // The hop between the silos is Orleans' own spans of the delegation call, on both sides.
        Assert.Contains(chain, s => s.Source.Name != CloudTracing.SourceName && s.Kind == ActivityKind.Server);

        foreach (var name in new[] { CloudTracing.LockAcquire, CloudTracing.EngineWrite, CloudTracing.LockCommit })
        {
            var span = Assert.Single(trace, s => s.OperationName == name);
            Assert.Equal(batch.SpanId, span.ParentSpanId);
        }
        // Below the engine write, one span per member request: the data chunk and the parity at least, on two members.
        var engineWrite = Assert.Single(trace, s => s.OperationName == CloudTracing.EngineWrite);
        var memberWrites = trace
            .Where(s => s.OperationName == CloudTracing.MemberIo && Ancestry(s, byId).Contains(engineWrite))
            .Where(s => Tag(s, "cloud.io") is "write" or "gather" or "split write")
            .ToList();
        Assert.True(
            memberWrites.Select(s => Tag(s, "cloud.member")).Distinct().Count() >= 2,
            $"expected member writes on at least two members below the engine write; the trace had: {string.Join(", ", trace.Select(s => $"{s.OperationName}({Tag(s, "cloud.io")} {Tag(s, "cloud.member")})"))}");
        // Every span of the trace hangs off the root: none was orphaned by a call that dropped the context.
        foreach (var span in trace) Assert.Equal(root, Ancestry(span, byId)[^1]);
    }

    private static string? Tag(Activity span, string name) => span.GetTagItem(name)?.ToString();

    /// <summary>The span and its ancestors, nearest first, as far as the collected spans reach.</summary>
    private static List<Activity> Ancestry(Activity span, Dictionary<ActivitySpanId, Activity> byId)
    {
        List<Activity> chain = [span];
        while (chain[^1].ParentSpanId != default && byId.TryGetValue(chain[^1].ParentSpanId, out var parent))
            chain.Add(parent);
        return chain;
    }
}
