namespace Cloud.Storage.Devices;

/// <summary>Which operations a fault applies to.</summary>
[Flags]
public enum FaultOperations
{
    /// <summary>Reads.</summary>
    Read = 1,

    /// <summary>Writes.</summary>
    Write = 2,

    /// <summary>Reads and writes.</summary>
    ReadWrite = Read | Write,
}

/// <summary>
/// A simulated crash shared by several devices (the members of one volume): after a budget of
/// writes, the write that crosses it persists only a prefix of its sectors (chosen from the seed)
/// and every later write persists nothing, as when a process dies or power fails mid-stripe.
/// </summary>
public sealed class CrashPoint
{
    private readonly Random _random;
    private long _writesLeft;

    /// <param name="writesBeforeCrash">Writes that complete in full before the crash (0 or more).</param>
    /// <param name="seed">Chooses how much of the crossing write lands.</param>
    public CrashPoint(long writesBeforeCrash, int seed)
    {
        if (writesBeforeCrash < 0)
            throw new ArgumentOutOfRangeException(nameof(writesBeforeCrash), writesBeforeCrash, "must be 0 or more.");
        _writesLeft = writesBeforeCrash;
        _random = new Random(seed);
        Seed = seed;
    }

    /// <summary>The seed, for failure messages.</summary>
    public int Seed { get; }

    /// <summary>True once the crash has happened.</summary>
    public bool HasCrashed => Volatile.Read(ref _writesLeft) < 0;

    /// <summary>Returns -1 to let a write through whole, else how many of its sectors land.</summary>
    internal int OnWrite(int sectors)
    {
        var left = Interlocked.Decrement(ref _writesLeft);
        if (left >= 0) return -1;
        if (left == -1) lock (_random) return _random.Next(sectors + 1);
        return 0;
    }
}

/// <summary>
/// A decorator that injects faults into any device: I/O errors on chosen ranges or at random from a
/// seed, a whole-device failure, added latency, bit flips in data read, torn writes, and a shared
/// <see cref="CrashPoint"/>. Injected errors surface as <see cref="BlockDeviceException"/>, as a
/// real failing disk's would. Configure it before or during I/O; the knobs are thread-safe.
/// </summary>
public sealed class FaultInjectingBlockDevice : IVectoredBlockDevice
{
    private readonly IBlockDevice _inner;
    private readonly Random _random;
    private readonly object _gate = new();
    private readonly List<(long Start, long End, FaultOperations Ops)> _errorRanges = [];
    private readonly List<(long Start, long End)> _flipRanges = [];
    private long _reads, _writes, _faults, _bytesRead;

    /// <param name="inner">The device to wrap (not disposed by this decorator unless
    /// <paramref name="ownsInner"/>).</param>
    /// <param name="seed">Seeds every random choice, so a printed seed replays the faults.</param>
    /// <param name="ownsInner">Dispose <paramref name="inner"/> with this device.</param>
    public FaultInjectingBlockDevice(IBlockDevice inner, int seed = 0, bool ownsInner = false)
    {
        _inner = inner ?? throw new ArgumentNullException(nameof(inner));
        _random = new Random(seed);
        Seed = seed;
        OwnsInner = ownsInner;
    }

    /// <summary>The seed of the random faults.</summary>
    public int Seed { get; }

    /// <summary>Whether disposing this device disposes the wrapped one.</summary>
    public bool OwnsInner { get; }

    /// <summary>The wrapped device.</summary>
    public IBlockDevice Inner => _inner;

    /// <inheritdoc />
    public string Name => _inner.Name;

    /// <inheritdoc />
    public int SectorSizeBytes => _inner.SectorSizeBytes;

    /// <inheritdoc />
    public long CapacityBytes => _inner.CapacityBytes;

    /// <inheritdoc />
    public int MaxInFlightIo => _inner.MaxInFlightIo;

    /// <summary>When true every operation fails, as a pulled disk does.</summary>
    public bool IsDead { get; set; }

    /// <summary>Probability (0..1) that a read fails.</summary>
    public double ReadErrorProbability { get; set; }

    /// <summary>Probability (0..1) that a write fails without writing.</summary>
    public double WriteErrorProbability { get; set; }

    /// <summary>Probability (0..1) that a read returns data with one random bit flipped (silent corruption).</summary>
    public double BitFlipProbability { get; set; }

    /// <summary>Probability (0..1) that a write lands only a random prefix of its sectors and then fails.</summary>
    public double TornWriteProbability { get; set; }

    /// <summary>Delay added before each operation.</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>A crash shared with other devices, or null.</summary>
    public CrashPoint? Crash { get; set; }

    /// <summary>Reads attempted.</summary>
    public long ReadCount => Interlocked.Read(ref _reads);

    /// <summary>Bytes of the reads attempted.</summary>
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>Writes attempted.</summary>
    public long WriteCount => Interlocked.Read(ref _writes);

    /// <summary>Faults injected so far (errors, flips, torn writes).</summary>
    public long FaultCount => Interlocked.Read(ref _faults);

    /// <summary>Makes every <paramref name="operations"/> overlapping the range fail.</summary>
    public void FailRange(long offsetBytes, long lengthBytes, FaultOperations operations = FaultOperations.ReadWrite)
    {
        CheckRange(offsetBytes, lengthBytes);
        lock (_gate) _errorRanges.Add((offsetBytes, offsetBytes + lengthBytes, operations));
    }

    /// <summary>
    /// Every read overlapping the range returns one bit flipped within the overlap (the disk returns bad data without
    /// an error).
    /// </summary>
    public void FlipBitsOnRead(long offsetBytes, long lengthBytes)
    {
        CheckRange(offsetBytes, lengthBytes);
        lock (_gate) _flipRanges.Add((offsetBytes, offsetBytes + lengthBytes));
    }

    /// <summary>Removes every range fault and zeroes the probabilities; the device works again.</summary>
    public void ClearFaults()
    {
        lock (_gate)
        {
            _errorRanges.Clear();
            _flipRanges.Clear();
        }
        IsDead = false;
        ReadErrorProbability = WriteErrorProbability = BitFlipProbability = TornWriteProbability = 0;
    }

    /// <inheritdoc />
    public async ValueTask ReadAsync(
        long offsetBytes,
        Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, destination.Length);
        if (Latency > TimeSpan.Zero) await Task.Delay(Latency, cancellationToken).ConfigureAwait(false);
        var end = offsetBytes + destination.Length;
        if (IsDead || HitsErrorRange(offsetBytes, end, FaultOperations.Read) || Chance(ReadErrorProbability))
            throw Fault($"injected read error at {offsetBytes} (+{destination.Length})");
        await _inner.ReadAsync(offsetBytes, destination, cancellationToken).ConfigureAwait(false);
        lock (_gate)
        {
            foreach ((var start, var stop) in _flipRanges)
            {
                long from = Math.Max(start, offsetBytes), to = Math.Min(stop, end);
                if (from >= to) continue;
                var bit = from * 8 + _random.NextInt64((to - from) * 8);
                FlipBit(destination.Span, bit - offsetBytes * 8);
            }
            if (BitFlipProbability > 0 && destination.Length > 0 && _random.NextDouble() < BitFlipProbability)
                FlipBit(destination.Span, _random.NextInt64(destination.Length * 8L));
        }
    }

    /// <inheritdoc />
    public async ValueTask WriteAsync(
        long offsetBytes,
        ReadOnlyMemory<byte> source,
        CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _writes);
        if (Latency > TimeSpan.Zero) await Task.Delay(Latency, cancellationToken).ConfigureAwait(false);
        var end = offsetBytes + source.Length;
        if (IsDead || HitsErrorRange(offsetBytes, end, FaultOperations.Write) || Chance(WriteErrorProbability))
            throw Fault($"injected write error at {offsetBytes} (+{source.Length})");
        var sectors = source.Length / SectorSizeBytes;
        var landed = Crash?.OnWrite(sectors) ?? -1;
        if (landed < 0 && Chance(TornWriteProbability))
            lock (_gate) landed = _random.Next(sectors);
        if (landed >= 0)
        {
            if (landed > 0)
                await _inner.WriteAsync(
                    offsetBytes, source[..(landed * SectorSizeBytes)], cancellationToken).ConfigureAwait(false);
            throw Fault($"torn write at {offsetBytes}: {landed} of {sectors} sectors landed");
        }
        await _inner.WriteAsync(offsetBytes, source, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>One read request, with every fault of <see cref="ReadAsync"/> over the whole range.</remarks>
    public async ValueTask ReadScatterAsync(
        long offsetBytes,
        IReadOnlyList<Memory<byte>> destinations,
        CancellationToken cancellationToken = default)
    {
        var total = DeviceChecks.CheckVector(
            this, offsetBytes, destinations, static m => m.Length, nameof(destinations));
        var whole = new byte[total];
        await ReadAsync(offsetBytes, whole, cancellationToken).ConfigureAwait(false);
        var at = 0;
        foreach (Memory<byte> piece in destinations)
        {
            whole.AsSpan(at, piece.Length).CopyTo(piece.Span);
            at += piece.Length;
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// One write request, with every fault of <see cref="WriteAsync"/> (a torn write keeps a prefix of the whole
    /// range).
    /// </remarks>
    public ValueTask WriteGatherAsync(
        long offsetBytes,
        IReadOnlyList<ReadOnlyMemory<byte>> sources,
        CancellationToken cancellationToken = default)
    {
        var total = DeviceChecks.CheckVector(this, offsetBytes, sources, static m => m.Length, nameof(sources));
        var whole = new byte[total];
        var at = 0;
        foreach (ReadOnlyMemory<byte> piece in sources)
        {
            piece.Span.CopyTo(whole.AsSpan(at));
            at += piece.Length;
        }
        return WriteAsync(offsetBytes, whole, cancellationToken);
    }

    /// <inheritdoc />
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (IsDead || Crash?.HasCrashed == true) throw Fault("injected flush error");
        await _inner.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => OwnsInner ? _inner.DisposeAsync() : ValueTask.CompletedTask;

    private bool HitsErrorRange(long start, long end, FaultOperations op)
    {
        lock (_gate)
        {
            foreach ((var s, var e, FaultOperations ops) in _errorRanges)
                if ((ops & op) != 0 && s < end && start < e) return true;
        }
        return false;
    }

    private bool Chance(double probability)
    {
        if (probability <= 0) return false;
        lock (_gate) return _random.NextDouble() < probability;
    }

    private BlockDeviceException Fault(string what)
    {
        Interlocked.Increment(ref _faults);
        return new BlockDeviceException(Name, what + $" (fault seed {Seed})");
    }

    private static void FlipBit(Span<byte> data, long bitIndex)
        => data[(int)(bitIndex / 8)] ^= (byte)(1 << (int)(bitIndex % 8));

    private void CheckRange(long offsetBytes, long lengthBytes)
    {
        if (offsetBytes < 0 || offsetBytes >= CapacityBytes)
            throw new ArgumentOutOfRangeException(
                nameof(offsetBytes), offsetBytes, $"{Name}: allowed 0..{CapacityBytes - 1}.");
        if (lengthBytes < 1 || offsetBytes + lengthBytes > CapacityBytes)
            throw new ArgumentOutOfRangeException(
                nameof(lengthBytes), lengthBytes, $"{Name}: allowed 1..{CapacityBytes - offsetBytes}.");
    }
}
