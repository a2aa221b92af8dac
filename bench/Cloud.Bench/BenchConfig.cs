using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;

namespace Cloud.Bench;

/// <summary>
/// The configuration every Cloud benchmark uses: workstation, non-concurrent GC forced between
/// iterations (so a collection started by one benchmark is not billed to the next), memory
/// diagnoser on (hot paths must show 0 B allocated), and results reported as ratios against the
/// peer marked as baseline in each category. Short by default because the machine is shared;
/// pass <c>--warmupCount</c>/<c>--iterationCount</c> for longer runs.
/// </summary>
public sealed class BenchConfig : ManualConfig
{
    /// <summary>Warm-up iterations per benchmark.</summary>
    public const int DefaultWarmupCount = 3;

    /// <summary>Measured iterations per benchmark.</summary>
    public const int DefaultIterationCount = 10;

    public BenchConfig()
    {
        AddJob(Job.Default
            .WithId("pinned-gc")
            .WithGcServer(false)
            .WithGcConcurrent(false)
            .WithGcForce(true)
            .WithWarmupCount(DefaultWarmupCount)
            .WithIterationCount(DefaultIterationCount));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(CategoriesColumn.Default, StatisticColumn.Median, BaselineRatioColumn.RatioMean, RankColumn.Arabic);
        AddLogicalGroupRules(BenchmarkLogicalGroupRule.ByCategory);
        WithSummaryStyle(SummaryStyle.Default.WithRatioStyle(RatioStyle.Trend));
        WithOrderer(new BenchmarkDotNet.Order.DefaultOrderer(BenchmarkDotNet.Order.SummaryOrderPolicy.Declared));
    }
}
