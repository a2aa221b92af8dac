using Cloud.Client;
using Cloud.Testing;

namespace Cloud.Cluster.Tests;

/// <summary>The crash tests' assertions on a volume after a crash.</summary>
public static class CrashAssert
{
    /// <summary>Reads everything back: no acknowledged write may be missing or replaced by an older one.</summary>
    public static async Task AssertNothingLostAsync(WriteStream stream, CloudVolume volume, Action<string> log)
    {
        var (lost, details) = await stream.VerifyAsync(volume);
        log(
            $"verified {stream.AcknowledgedCount} acknowledged writes ({stream.FailedCount} unacknowledged): {lost} blocks lost");
        foreach (var error in stream.Records.Where(r => !r.Acknowledged).Select(r => r.Error).Distinct().Take(3))
            log($"  unacknowledged: {error}");
        Assert.True(
            lost == 0, $"{lost} blocks do not hold their last acknowledged write (seed {stream.Seed}): {details}");
    }

    /// <summary>Scrub (no repair): every stripe's parity must agree with its data.</summary>
    public static async Task AssertParityConsistentAsync(CloudClient client, string volumeName, Action<string> log)
    {
        var scrub = await CrashScenario.RetryAsync(() => client.ScrubAsync(volumeName, repair: false));
        log(
            $"scrub of {volumeName}: {scrub.StripesChecked} stripes, {scrub.Mismatches} parity mismatches, {scrub.ChecksumErrors} checksum errors");
        Assert.True(scrub.StripesChecked > 0, "scrub checked no stripes");
        Assert.Equal(0, scrub.Mismatches);
        Assert.Equal(0, scrub.ChecksumErrors);
    }
}
