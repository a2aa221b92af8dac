using Cloud.Storage.Volumes;

namespace Cloud.Storage.Tests.Volumes;

/// <summary>
/// The intent log's hand-over of marks to the away record (<see cref="WriteIntentLog.ClearIdleAsync"/> with a
/// <c>beforeClear</c>): a region is cleared only after the caller heard of it, if a write of it reached every member.
/// </summary>
public sealed class WriteIntentLogTests
{
    private const long Stripes = 64;
    private const long RegionStripes = 8;

    private static WriteIntentLog NewLog() =>
        new(Stripes, RegionStripes, enabled: true, persist: (_, _) => ValueTask.CompletedTask);

    [Fact]
    public async Task RegionThatBecomesIdleWhileTheCallerIsTold_IsNotClearedUnheard()
    {
        var log = NewLog();
        const long busy = 3, idle = 3 * RegionStripes;
        await log.BeginAsync(busy, CancellationToken.None);
        log.NoteReachedEvery(busy);
        await log.BeginAsync(idle, CancellationToken.None);
        log.NoteReachedEvery(idle);
        log.End(idle);

        var heard = new List<(long First, long End)>();
        await log.ClearIdleAsync(
            CancellationToken.None,
            beforeClear: ranges =>
            {
                heard.AddRange(ranges);
                // The busy region's write ends while the caller records what it heard.
                log.End(busy);
                return ValueTask.CompletedTask;
            });

        Assert.Equal([(idle, idle + RegionStripes)], heard);
        Assert.False(log.IsMarked(idle), "the region the caller heard of kept its mark");
        Assert.True(log.IsMarked(busy), "a region the caller never heard of was cleared");

        // The next clear tells the caller of it, then clears it.
        heard.Clear();
        await log.ClearIdleAsync(CancellationToken.None, beforeClear: ranges =>
        {
            heard.AddRange(ranges);
            return ValueTask.CompletedTask;
        });
        Assert.Equal([(0L, RegionStripes)], heard);
        Assert.False(log.IsMarked(busy));
    }

    [Fact]
    public async Task RegionWrittenWhileAMemberWasAway_IsClearedWithoutBeingHandedOver()
    {
        var log = NewLog();
        // Its write left a member out (the away record has it): no NoteReachedEvery.
        await log.BeginAsync(5, CancellationToken.None);
        log.End(5);

        var heard = new List<(long First, long End)>();
        await log.ClearIdleAsync(CancellationToken.None, beforeClear: ranges =>
        {
            heard.AddRange(ranges);
            return ValueTask.CompletedTask;
        });

        Assert.Empty(heard);
        Assert.False(log.IsMarked(5));
    }
}
