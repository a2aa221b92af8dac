using System.Buffers.Binary;
using System.Diagnostics;
using Cloud.Client;

namespace Cloud.Testing;

/// <summary>
/// A stream of verifiable writes through the SDK with a ledger of what was acknowledged. Each writer owns a disjoint
/// region and writes sequentially, so per block "the last acknowledged write" is well defined; a write that failed
/// (not acknowledged) may or may not have landed, so it is an allowed outcome too, unless a later acknowledged write
/// to the block followed it. Every block carries its write's sequence number, its own index and a fill derived from
/// both, so a stale, torn or misplaced block is caught.
/// </summary>
public sealed class WriteStream
{
    /// <summary>The logical block.</summary>
    public const int BlockBytes = 4096;

    /// <summary>Largest write, in blocks.</summary>
    public const int MaxWriteBlocks = 8;

    /// <summary>A write slower than this counts as stalled by a failure, for the recovery time.</summary>
    public static readonly TimeSpan StallThreshold = TimeSpan.FromMilliseconds(500);

    /// <summary>Bound on one write (Orleans' response timeout is 30 s; a stuck call fails before this).</summary>
    public static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(45);

    private readonly long _blockCount;
    private readonly int _writers;
    private readonly int _seed;
    private readonly object _gate = new();
    private readonly long[] _acked;                  // per block: seq of the last acknowledged write, 0 = none
    private readonly List<long>?[] _maybe;           // per block: seqs of failed writes after the last ack
    // per block: seqs of timed-out writes, which may still land at any time
    private readonly List<long>?[] _concurrent;
    private readonly List<WriteRecord> _records = [];
    private long _nextSeq;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    /// <summary>One write's fate.</summary>
    public readonly record struct WriteRecord(
        long Seq,
        TimeSpan Issued,
        TimeSpan Completed,
        bool Acknowledged,
        string? Error);

    /// <summary>
    /// Creates a ledger for a volume of <paramref name="volumeBytes"/> with <paramref name="writers"/> disjoint
    /// regions.
    /// </summary>
    public WriteStream(long volumeBytes, int writers, int seed)
    {
        _blockCount = volumeBytes / BlockBytes;
        _writers = writers;
        _seed = seed;
        _acked = new long[_blockCount];
        _maybe = new List<long>?[_blockCount];
        _concurrent = new List<long>?[_blockCount];
    }

    /// <summary>
    /// How long a writer waits for one write before giving up on it (then it is unacknowledged and may still land
    /// later, concurrently with the writer's next writes). Default <see cref="WriteTimeout"/>.
    /// </summary>
    public TimeSpan GiveUpAfter { get; init; } = WriteTimeout;

    /// <summary>
    /// Writes per second the whole stream issues, shared evenly by its writers (an open-loop load, like fio's
    /// <c>rate_iops</c>); null (the default) lets each writer issue its next write as soon as the last one ends. A
    /// writer behind its schedule issues at once.
    /// </summary>
    public double? WritesPerSecond { get; init; }

    /// <summary>The seed (print it on failure: it replays the same offsets and sizes).</summary>
    public int Seed => _seed;

    /// <summary>Time since the stream was created (the ledger's clock).</summary>
    public TimeSpan Now => _clock.Elapsed;

    /// <summary>Acknowledged writes so far.</summary>
    public int AcknowledgedCount { get { lock (_gate) return _records.Count(r => r.Acknowledged); } }

    /// <summary>Failed writes so far.</summary>
    public int FailedCount { get { lock (_gate) return _records.Count(r => !r.Acknowledged); } }

    /// <summary>Every write so far.</summary>
    public IReadOnlyList<WriteRecord> Records { get { lock (_gate) return [.. _records]; } }

    /// <summary>
    /// Runs the writers until <paramref name="stop"/> is cancelled; each uses <paramref name="volume"/>() for its next
    /// write.
    /// </summary>
    public Task RunAsync(Func<CloudVolume> volume, CancellationToken stop, bool forceUnitAccess = false) =>
        Task.WhenAll(
            Enumerable.Range(0, _writers).Select(w => Task.Run(() => WriterAsync(w, volume, stop, forceUnitAccess))));

    private async Task WriterAsync(int writer, Func<CloudVolume> volume, CancellationToken stop, bool fua)
    {
        var random = new Random(HashCode.Combine(_seed, writer));
        var regionBlocks = _blockCount / _writers;
        var regionStart = writer * regionBlocks;
        var interval = WritesPerSecond is { } rate ? TimeSpan.FromSeconds(_writers / rate) : TimeSpan.Zero;
        var next = _clock.Elapsed;
        while (!stop.IsCancellationRequested)
        {
            if (interval > TimeSpan.Zero)
            {
                next += interval;
                var wait = next - interval - _clock.Elapsed;
                if (wait > TimeSpan.Zero)
                {
                    try { await Task.Delay(wait, stop).ConfigureAwait(false); }
                    catch (OperationCanceledException) { break; }
                }
                else if (-wait > interval) next = _clock.Elapsed + interval;
            }
            var blocks = random.Next(1, MaxWriteBlocks + 1);
            var first = regionStart + random.NextInt64(0, regionBlocks - blocks + 1);
            var seq = Interlocked.Increment(ref _nextSeq);
            var data = new byte[blocks * BlockBytes];
            for (var b = 0; b < blocks; b++) Fill(data.AsSpan(b * BlockBytes, BlockBytes), seq, first + b);
            var issued = _clock.Elapsed;
            string? error = null;
            var timedOut = false;
            try
            {
                await volume().WriteAsync(
                    first * BlockBytes, data, fua).WaitAsync(GiveUpAfter, stop).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                // Given up on (ours or Orleans' timeout, or the stream stopping): the write may still be queued in a
                // live silo and take its timestamp after the writer's next write, so it stays a possible outcome for
                // good.
                // Any other failure happened before an answer could come, so a later acknowledged write is newer.
                timedOut = ex is TimeoutException or OperationCanceledException;
                // Also a write still in flight when the stream stops: it was never acknowledged.
                error = $"{ex.GetType().Name}: {ex.Message}";
            }
            lock (_gate)
            {
                _records.Add(new WriteRecord(seq, issued, _clock.Elapsed, error is null, error));
                for (var b = first; b < first + blocks; b++)
                {
                    if (error is null) { _acked[b] = seq; _maybe[b] = null; }
                    else (_maybe[b] ??= []).Add(seq);
                    if (timedOut) (_concurrent[b] ??= []).Add(seq);
                }
            }
            if (error is not null)
            {
                // The gateway may be gone: give the client a moment to move on instead of spinning.
                try { await Task.Delay(50, stop).ConfigureAwait(false); } catch (OperationCanceledException) { }
            }
        }
    }

    /// <summary>The block content for write <paramref name="seq"/> at <paramref name="block"/>.</summary>
    public static void Fill(Span<byte> destination, long seq, long block)
    {
        BinaryPrimitives.WriteInt64LittleEndian(destination, seq);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], block);
        var x = unchecked((ulong)seq * 0x9E3779B97F4A7C15UL) ^ (ulong)block ^ 1;
        for (var i = 16; i + 8 <= destination.Length; i += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            BinaryPrimitives.WriteUInt64LittleEndian(destination[i..], x);
        }
    }

    /// <summary>
    /// Reads the whole volume back and returns the blocks whose content is not an allowed outcome (lost or stale
    /// acknowledged writes, torn or foreign blocks), with a description of the first few.
    /// </summary>
    public async Task<(long Lost, string Details)> VerifyAsync(CloudVolume volume)
    {
        const int ReadBytes = 1 << 20;
        long lost = 0;
        var details = new List<string>();
        var expected = new byte[BlockBytes];
        var buffer = new byte[ReadBytes];
        for (long offset = 0; offset < _blockCount * BlockBytes; offset += ReadBytes)
        {
            var length = (int)Math.Min(ReadBytes, _blockCount * BlockBytes - offset);
            await volume.ReadAsync(offset, buffer.AsMemory(0, length)).ConfigureAwait(false);
            for (var at = 0; at < length; at += BlockBytes)
            {
                var block = (offset + at) / BlockBytes;
                var actual = buffer.AsSpan(at, BlockBytes);
                var seq = BinaryPrimitives.ReadInt64LittleEndian(actual);
                long acked;
                List<long>? maybe;
                lock (_gate) { acked = _acked[block]; maybe = [.. _maybe[block] ?? [], .. _concurrent[block] ?? []]; }
                var allowed = seq == acked || (maybe?.Contains(seq) ?? false);
                if (allowed && seq != 0)
                {
                    Fill(expected, seq, block);
                    allowed = actual.SequenceEqual(expected);
                }
                else if (allowed) allowed = !actual.ContainsAnyExcept((byte)0);
                if (allowed) continue;
                lost++;
                if (details.Count < 5)
                    details.Add(
                        $"block {block}: holds seq {seq} (block field {BinaryPrimitives.ReadInt64LittleEndian(actual[8..])}), acknowledged seq {acked}, unacknowledged candidates [{string.Join(",", maybe ?? [])}]");
            }
        }
        return (lost, string.Join("; ", details));
    }

    /// <summary>
    /// The quiet time that ends a failover's stall in <see cref="RecoveryTime"/>: a stall that starts later than this
    /// after the previous one ended is another event, not the same failover.
    /// </summary>
    public static readonly TimeSpan RecoveryQuiet = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Time from <paramref name="killedAt"/> until writes flow again. Stalls (writes that failed, were given up, or took
    /// longer than <see cref="StallThreshold"/>) that end after the kill form one chain as long as each was issued
    /// within <paramref name="quiet"/> of the end of the chain so far; the answer is the chain's end, with no upper
    /// bound of its own (a failover that takes 30 s measures 30 s). With no stall, the completion of the first write
    /// acknowledged after the kill.
    /// </summary>
    public TimeSpan RecoveryTime(TimeSpan killedAt, TimeSpan quiet)
    {
        var records = Records;
        var stalls = records
            .Where(r => r.Completed >= killedAt && (!r.Acknowledged || r.Completed - r.Issued > StallThreshold))
            .OrderBy(r => r.Issued);
        var recovered = killedAt;
        foreach (var stall in stalls)
        {
            if (stall.Issued > recovered + quiet) break;
            if (stall.Completed > recovered) recovered = stall.Completed;
        }
        if (recovered > killedAt) return recovered - killedAt;
        var next = records.Where(r => r.Issued >= killedAt && r.Acknowledged).OrderBy(r => r.Completed)
            .FirstOrDefault();
        return next == default ? TimeSpan.MaxValue : next.Completed - killedAt;
    }

    /// <summary>
    /// Stalls after <paramref name="killedAt"/> in 5 s buckets ("+0s: 3 failed, 12 slow"), for a failure message that
    /// shows whether a failover's stall is one event or a slow tail.
    /// </summary>
    public string DescribeStalls(TimeSpan killedAt)
    {
        var buckets = Records
            .Where(r => r.Issued >= killedAt && (!r.Acknowledged || r.Completed - r.Issued > StallThreshold))
            .GroupBy(r => (int)((r.Issued - killedAt).TotalSeconds / 5) * 5)
            .OrderBy(g => g.Key)
            .Select(g => $"+{g.Key}s: {g.Count(r => !r.Acknowledged)} failed, {g.Count(r => r.Acknowledged)} slow");
        return string.Join("; ", buckets);
    }

    /// <summary>
    /// <see cref="RecoveryTime"/> once it is final: waits until every write issued up to <paramref name="quiet"/> after
    /// the chain's end has completed or been given up (<see cref="GiveUpAfter"/>), at most <paramref name="timeout"/>.
    /// </summary>
    public async Task<TimeSpan> MeasureRecoveryAsync(TimeSpan killedAt, TimeSpan quiet, TimeSpan timeout)
    {
        var deadline = _clock.Elapsed + timeout;
        while (true)
        {
            var recovery = RecoveryTime(killedAt, quiet);
            var settled = recovery != TimeSpan.MaxValue && _clock.Elapsed > killedAt + recovery + quiet + GiveUpAfter;
            if (settled || _clock.Elapsed > deadline) return recovery;
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits until at least <paramref name="count"/> more writes were acknowledged than at the call, or the timeout.
    /// </summary>
    public async Task<bool> WaitForAcksAsync(int count, TimeSpan timeout)
    {
        var target = AcknowledgedCount + count;
        var deadline = _clock.Elapsed + timeout;
        while (AcknowledgedCount < target)
        {
            if (_clock.Elapsed > deadline) return false;
            await Task.Delay(20).ConfigureAwait(false);
        }
        return true;
    }
}
