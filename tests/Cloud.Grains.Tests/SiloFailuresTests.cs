using System.Runtime.CompilerServices;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;
using Orleans.Runtime;

namespace Cloud.Grains.Tests;

public sealed class SiloFailuresTests
{
    public static TheoryData<Exception> Failures() =>
    [
        new SiloUnavailableException(),
        // Orleans keeps this exception's constructors internal; the check looks at its type only.
        (Exception)RuntimeHelpers.GetUninitializedObject(typeof(OrleansMessageRejectionException)),
        new TimeoutException(),
        new SiloNotFoundException("silo-2", ["silo-0", "silo-1"]),
        new OrleansException("wrapped", new SiloUnavailableException()),
    ];

    public static TheoryData<Exception> NotFailures() =>
    [
        new CloudRequestException("bad input"),
        new CloudStorageException("disk error"),
        new LockFencedException(3, "p"),
        new InvalidOperationException(),
        new OrleansException("other"),
        new OrleansException("wrapped", new TimeoutException()),
    ];

    [Theory]
    [MemberData(nameof(Failures))]
    public void GoneOrUnreachableSilos_AreSiloFailures(Exception exception)
        => Assert.True(SiloFailures.IsSiloFailure(exception));

    [Theory]
    [MemberData(nameof(NotFailures))]
    public void ErrorsOfTheCallItself_AreNotSiloFailures(Exception exception)
        => Assert.False(SiloFailures.IsSiloFailure(exception));

    [Fact]
    public void Backoff_DoublesUpToItsMaximum()
    {
        var delays = new List<TimeSpan> { SiloFailures.FirstRetryDelay };
        for (var i = 0; i < 8; i++) delays.Add(SiloFailures.NextDelay(delays[^1]));

        Assert.Equal([50, 100, 200, 400, 800, 1000, 1000, 1000, 1000], delays.Select(d => (int)d.TotalMilliseconds));
    }

    [Fact]
    public async Task Retry_CallsAgainAfterSiloFailures_UntilTheCallSucceeds()
    {
        var calls = 0;
        var retried = new List<Exception>();
        var result = await SiloFailures.RetryAsync(
            () => ++calls < 3 ? throw new SiloUnavailableException() : Task.FromResult(calls),
            TimeSpan.FromMinutes(1),
            retried.Add);

        Assert.Equal(3, result);
        Assert.Equal(2, retried.Count);
    }

    [Fact]
    public async Task Retry_ThrowsOtherErrorsAtOnce()
    {
        var calls = 0;
        await Assert.ThrowsAsync<CloudRequestException>(
            () => SiloFailures.RetryAsync<int>(
                () => { calls++; throw new CloudRequestException("bad"); }, TimeSpan.FromMinutes(1)));
        Assert.Equal(1, calls);
    }

    [Fact]
    public async Task Retry_GivesUpAfterItsTimeout()
    {
        var calls = 0;
        await Assert.ThrowsAsync<TimeoutException>(
            () => SiloFailures.RetryAsync<int>(() => { calls++; throw new TimeoutException(); }, TimeSpan.Zero));
        Assert.Equal(1, calls);
    }
}
