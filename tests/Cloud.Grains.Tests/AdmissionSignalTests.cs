using Cloud.Grains.RaidWorkers;

namespace Cloud.Grains.Tests;

public sealed class AdmissionSignalTests
{
    [Fact]
    public void RaisesWithoutAWaiter_LeaveNoPermit_SoTheNextWaitBlocks()
    {
        var signal = new AdmissionSignal();
        for (var i = 0; i < 1000; i++) signal.Raise();

        Assert.False(signal.NextAsync().IsCompleted);
    }

    [Fact]
    public async Task ARaise_WakesEveryWaiterPresent_AndOnlyThem()
    {
        var signal = new AdmissionSignal();
        var first = signal.NextAsync();
        var second = signal.NextAsync();

        signal.Raise();
        await Task.WhenAll(first, second).WaitAsync(TimeSpan.FromSeconds(10));

        // A wait begun after the raise waits for the next one: the raise is not stored.
        var later = signal.NextAsync();
        signal.Raise();
        await later.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(signal.NextAsync().IsCompleted);
    }

    [Fact]
    public void ATaskTakenBeforeARaise_IsCompletedByIt_SoACheckThenWaitMissesNoWakeUp()
    {
        var signal = new AdmissionSignal();
        var taken = signal.NextAsync();
        // The waiter would check for room here and find none; a copy finishes before it awaits.
        signal.Raise();

        Assert.True(taken.IsCompletedSuccessfully);
    }
}
