using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Cloud.Storage.Devices;

namespace Cloud.Grains.Engine;

/// <summary>
/// Adds the current injected latency to every data-path operation of a store (reads, writes, resyncs): a slow silo for
/// benchmarks, load and failure tests.
/// </summary>
internal sealed class LatencyInjectingStore(IVolumeStore inner, Func<TimeSpan> latency) : IVolumeStore
{
    public long CapacityBytes => inner.CapacityBytes;
    public long StripeDataBytes => inner.StripeDataBytes;
    public long StripeCount => inner.StripeCount;

    public long MemberBytesNeeded => inner.MemberBytesNeeded;

    public bool KeepsPartialParityLog => inner.KeepsPartialParityLog;
    public int BlockSizeBytes => inner.BlockSizeBytes;
    public VolumeHealthState Health => inner.Health;
    public ImmutableArray<DiskStatus> Members => inner.Members;
    public (long First, long Last) StripeRange(long offsetBytes, long lengthBytes)
        => inner.StripeRange(offsetBytes, lengthBytes);

    public async ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (latency() is { Ticks: > 0 } delay) await Task.Delay(delay, cancellationToken);
        await inner.ReadAsync(offsetBytes, destination, cancellationToken);
    }

    public async ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        long writeTimestamp,
        bool forceUnitAccess,
        CancellationToken cancellationToken)
    {
        if (latency() is { Ticks: > 0 } delay) await Task.Delay(delay, cancellationToken);
        await inner.WriteAsync(offsetBytes, source, writeTimestamp, forceUnitAccess, cancellationToken);
    }

    public ValueTask ReadBlockTimestampsAsync(
        long offsetBytes,
        Memory<long> timestamps,
        CancellationToken cancellationToken) =>
        inner.ReadBlockTimestampsAsync(offsetBytes, timestamps, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    public ValueTask FlushEveryMemberAsync(CancellationToken cancellationToken) =>
        inner.FlushEveryMemberAsync(cancellationToken);
    public ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken)
        => inner.TrimAsync(offsetBytes, lengthBytes, cancellationToken);
    public ValueTask FailMemberAsync(int memberIndex, string reason) => inner.FailMemberAsync(memberIndex, reason);
    public ValueTask ReplaceMemberAsync(
        int memberIndex,
        string path,
        IBlockDevice? device,
        CancellationToken cancellationToken)
        => inner.ReplaceMemberAsync(memberIndex, path, device, cancellationToken);
    public long RebuildCursorStripes => inner.RebuildCursorStripes;
    public long RebuildBytesMoved => inner.RebuildBytesMoved;
    public ValueTask RebuildStripesAsync(
        long endStripe,
        IProgress<(long Done, long Total, long BytesMoved)>? progress,
        CancellationToken cancellationToken)
        => inner.RebuildStripesAsync(endStripe, progress, cancellationToken);
    public ValueTask<ScrubResult> ScrubStripesAsync(
        long firstStripe,
        long lastStripe,
        bool repair,
        CancellationToken cancellationToken) =>
        inner.ScrubStripesAsync(firstStripe, lastStripe, repair, cancellationToken);
    public Guid VolumeId => inner.VolumeId;
    public ValueTask RefreshMembersAsync(CancellationToken cancellationToken)
        => inner.RefreshMembersAsync(cancellationToken);
    public IReadOnlyList<int> WriterSlotsToRecover => inner.WriterSlotsToRecover;
    public ValueTask<long> RecoverWriterSlotAsync(int writerSlot, CancellationToken cancellationToken)
        => inner.RecoverWriterSlotAsync(writerSlot, cancellationToken);

    public void ForgetPartialParityIndex() => inner.ForgetPartialParityIndex();
    public ValueTask<IReadOnlyList<(long First, long End)>> MarkedStripesOfSlotAsync(
        int writerSlot,
        CancellationToken cancellationToken)
        => inner.MarkedStripesOfSlotAsync(writerSlot, cancellationToken);
    public async ValueTask<long> ResyncStripesAsync(long firstStripe, long endStripe, CancellationToken cancellationToken)
    {
        // A resync reads and writes its stripes: a slow silo's resync is slow too (a dead silo's slot recovery then
        // lags behind the requests that follow the death, as on a loaded host).
        if (latency() is { Ticks: > 0 } delay) await Task.Delay(delay, cancellationToken);
        return await inner.ResyncStripesAsync(firstStripe, endStripe, cancellationToken);
    }
    public ValueTask ClearWriterSlotAsync(int writerSlot, CancellationToken cancellationToken)
        => inner.ClearWriterSlotAsync(writerSlot, cancellationToken);
    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
