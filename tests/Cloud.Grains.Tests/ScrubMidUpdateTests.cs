using Cloud.Grains.Abstractions;
using Cloud.Storage.Format;
using Microsoft.Win32.SafeHandles;

namespace Cloud.Grains.Tests;

/// <summary>
/// After every silo was killed, each recovers its intent slot when it first opens a volume; a scrub on another silo
/// could run ahead of that recovery and report a stripe the slot still marks (left mid-update) as a parity mismatch
/// (`CrashTests.WritesAcknowledgedAfterFlushOrWithFua_SurviveKillingEverySilo` in CI, once the dead writer's recovery
/// went a few stripes at a time). Such a stripe is resynced by the scrub, as the recovery would; an inconsistent
/// stripe no slot marks is still reported.
/// </summary>
[Collection(nameof(SharedCluster))]
public sealed class ScrubMidUpdateTests(SharedClusterFixture fixture)
{
    private const int Chunk = 16 << 10;

    /// <summary>An intent slot no silo of the shared cluster writes through, so no silo recovers it.</summary>
    private const int ForeignSlot = 40;

    private CloudCluster Cloud => fixture.Cloud;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task StripeLeftMidUpdate_IsResyncedWhenASlotMarksIt_AndReportedWhenNone(bool marked)
    {
        var name = $"midupd-{marked.ToString().ToLowerInvariant()}-{Guid.NewGuid().ToString("N")[..6]}";
        var info = await Cloud.Client.CreateVolumeAsync(new VolumeSpec(name, 2 << 20, VolumeLevel.Raid5, 3, Chunk, false));
        await Cloud.FrontEnd(Cloud.Silos[0]).WriteAsync(name, 0, Blocks.Pattern(512 << 10, 43), forceUnitAccess: false);
        await Cloud.FrontEnd(Cloud.Silos[0]).FlushAsync(name);

        // Stripe 1's chunk on member 0 changed with its checksums, and the rest of its stripe not: a write cut short.
        using (var member = File.OpenHandle(info.DiskPaths[0], FileMode.Open, FileAccess.ReadWrite))
        {
            TearStripe(member, stripe: 1);
            if (marked) MarkWholeVolume(member, ForeignSlot);
        }

        var scrub = await Cloud.Client.ScrubAsync(name, repair: false);
        Assert.Equal(0, scrub.ChecksumErrors);
        Assert.Equal(marked ? 0 : 1, scrub.Mismatches);
        if (marked) Assert.Equal(0, (await Cloud.Client.ScrubAsync(name, repair: false)).Mismatches);
    }

    private static void TearStripe(SafeFileHandle member, long stripe)
    {
        var slotBytes = Chunk + OnDiskFormat.MetadataBytes(Chunk);
        var offset = OnDiskFormat.DataOffsetBytes + stripe * OnDiskFormat.ChunkStrideBytes(Chunk);
        var slot = new byte[slotBytes];
        Assert.Equal(slotBytes, RandomAccess.Read(member, slot, offset));
        var row = slot.AsSpan(0, VolumeMath.BlockSizeBytes);
        row[100] ^= 0xFF;
        var meta = slot.AsSpan(Chunk);
        var (timestamp, _) = OnDiskFormat.ReadEntry(meta, 0);
        OnDiskFormat.WriteEntry(meta, 0, timestamp, OnDiskFormat.BlockChecksum(row));
        RandomAccess.Write(member, slot, offset);
    }

    /// <summary>Sets region 0 of <paramref name="slot"/>'s intent bitmap: a small volume is one region.</summary>
    private static void MarkWholeVolume(SafeFileHandle member, int slot)
    {
        var page = new byte[OnDiskFormat.IntentSlotBytes];
        page[0] = 1;
        RandomAccess.Write(member, page, OnDiskFormat.IntentOffsetBytes + (long)slot * OnDiskFormat.IntentSlotBytes);
    }
}
