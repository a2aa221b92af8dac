using System.Buffers.Binary;
using System.Collections.Immutable;
using Cloud.Grains.Abstractions;
using Microsoft.Win32.SafeHandles;

namespace Cloud.Grains.Engine;

/// <summary>
/// A stand-in for the storage engine's RaidVolume while it is being written: every member holds a full copy (so
/// degraded reads, rebuild and scrub behave like a mirror whatever the level), with a header carrying the member
/// table and a per-block timestamp region. It exists only so the grains can run end to end before the engine lands;
/// the RaidVolume adapter replaces it.
/// </summary>
internal sealed class InterimMirrorStore : IVolumeStore
{
    private const int HeaderBytes = 4096;
    private const ulong Magic = 0x4D5249_4E494C43; // "CLINIRM" little-endian-ish tag, only for this stand-in
    private readonly SafeFileHandle?[] _handles;
    private readonly string[] _paths;
    private readonly DiskState[] _states;
    private readonly long _dataBytes;
    private readonly long _stripeDataBytes;
    private readonly Guid _volumeId;
    private long _generation;
    private readonly SemaphoreSlim _control = new(1, 1);
    private (long Done, long Total)? _rebuild;

    private InterimMirrorStore(VolumeInfo volume, SafeFileHandle?[] handles, DiskState[] states, long dataBytes, long generation)
    {
        _handles = handles;
        _paths = [.. volume.DiskPaths];
        _states = states;
        _dataBytes = dataBytes;
        _stripeDataBytes = VolumeMath.StripeDataBytes(volume.Level, volume.DiskCount, volume.ChunkSizeBytes);
        _volumeId = volume.VolumeId;
        _generation = generation;
    }

    public long CapacityBytes => _dataBytes;
    public long StripeDataBytes => _stripeDataBytes;
    public long StripeCount => _dataBytes / _stripeDataBytes;
    public int BlockSizeBytes => VolumeMath.BlockSizeBytes;

    public VolumeHealthState Health
    {
        get
        {
            var active = _states.Count(s => s == DiskState.Active);
            if (active == 0) return VolumeHealthState.Failed;
            if (_states.Any(s => s == DiskState.Rebuilding)) return VolumeHealthState.Rebuilding;
            return active == _states.Length ? VolumeHealthState.Healthy : VolumeHealthState.Degraded;
        }
    }

    public ImmutableArray<DiskStatus> Members => [.. _states.Select((s, i) => new DiskStatus(i, _paths[i], s))];

    private long TimestampRegion => HeaderBytes + _dataBytes;

    internal static long MemberSizeFor(long dataBytes) => HeaderBytes + dataBytes + dataBytes / VolumeMath.BlockSizeBytes * 8;

    public static async ValueTask<IVolumeStore> CreateAsync(VolumeInfo volume, long dataBytes)
    {
        var handles = new SafeFileHandle?[volume.DiskCount];
        for (var i = 0; i < handles.Length; i++)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(volume.DiskPaths[i]))!);
            handles[i] = File.OpenHandle(volume.DiskPaths[i], FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite, FileOptions.None, MemberSizeFor(dataBytes));
        }
        var store = new InterimMirrorStore(volume, handles, [.. Enumerable.Repeat(DiskState.Active, volume.DiskCount)], dataBytes, 1);
        await store.WriteHeadersAsync();
        return store;
    }

    public static async ValueTask<IVolumeStore> OpenAsync(VolumeInfo volume)
    {
        var handles = new SafeFileHandle?[volume.DiskCount];
        DiskState[]? states = null;
        long generation = -1, dataBytes = 0;
        for (var i = 0; i < handles.Length; i++)
        {
            if (!File.Exists(volume.DiskPaths[i])) continue;
            handles[i] = File.OpenHandle(volume.DiskPaths[i], FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            var header = new byte[HeaderBytes];
            await RandomAccess.ReadAsync(handles[i]!, header, 0);
            if (BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic || new Guid(header.AsSpan(8, 16)) != volume.VolumeId)
                throw new InvalidDataException($"{volume.DiskPaths[i]} is not member {i} of volume {volume.Name}");
            var gen = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(24));
            if (gen > generation)
            {
                generation = gen;
                dataBytes = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(32));
                states = new DiskState[volume.DiskCount];
                for (var m = 0; m < states.Length; m++) states[m] = (DiskState)header[40 + m];
            }
        }
        if (states is null) throw new InvalidDataException($"no member of volume {volume.Name} was found");
        for (var i = 0; i < handles.Length; i++) if (handles[i] is null) states[i] = DiskState.Missing;
        return new InterimMirrorStore(volume, handles, states, dataBytes, generation);
    }

    private async Task WriteHeadersAsync()
    {
        _generation++;
        var header = new byte[HeaderBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        _volumeId.TryWriteBytes(header.AsSpan(8, 16));
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(24), _generation);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(32), _dataBytes);
        for (var m = 0; m < _states.Length; m++) header[40 + m] = (byte)_states[m];
        for (var i = 0; i < _handles.Length; i++)
            if (_handles[i] is { } h && _states[i] != DiskState.Failed) await RandomAccess.WriteAsync(h, header, 0);
    }

    public (long First, long Last) StripeRange(long offsetBytes, long lengthBytes) =>
        (offsetBytes / _stripeDataBytes, (offsetBytes + lengthBytes - 1) / _stripeDataBytes);

    private void Check(long offsetBytes, long lengthBytes)
    {
        if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes % BlockSizeBytes != 0 || lengthBytes % BlockSizeBytes != 0 || offsetBytes + lengthBytes > _dataBytes)
            throw new ArgumentOutOfRangeException(nameof(offsetBytes), $"range {offsetBytes}+{lengthBytes} is not block-aligned inside 0-{_dataBytes}");
    }

    private SafeFileHandle FirstReadable()
    {
        for (var i = 0; i < _handles.Length; i++) if (_states[i] == DiskState.Active && _handles[i] is { } h) return h;
        throw new IOException("volume failed: no active member");
    }

    public async ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken)
    {
        Check(offsetBytes, destination.Length);
        await RandomAccess.ReadAsync(FirstReadable(), destination, HeaderBytes + offsetBytes, cancellationToken);
    }

    public async ValueTask WriteAsync(long offsetBytes, ReadOnlyMemory<byte> source, long writeTimestamp, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        Check(offsetBytes, source.Length);
        var blocks = source.Length / BlockSizeBytes;
        var ts = new byte[blocks * 8];
        for (var b = 0; b < blocks; b++) BinaryPrimitives.WriteInt64LittleEndian(ts.AsSpan(b * 8), writeTimestamp);
        for (var i = 0; i < _handles.Length; i++)
        {
            if (_handles[i] is not { } h || _states[i] == DiskState.Failed || _states[i] == DiskState.Missing) continue;
            await RandomAccess.WriteAsync(h, source, HeaderBytes + offsetBytes, cancellationToken);
            await RandomAccess.WriteAsync(h, ts, TimestampRegion + offsetBytes / BlockSizeBytes * 8, cancellationToken);
            if (forceUnitAccess) RandomAccess.FlushToDisk(h);
        }
    }

    public async ValueTask ReadBlockTimestampsAsync(long offsetBytes, Memory<long> timestamps, CancellationToken cancellationToken)
    {
        Check(offsetBytes, (long)timestamps.Length * BlockSizeBytes);
        var raw = new byte[timestamps.Length * 8];
        await RandomAccess.ReadAsync(FirstReadable(), raw, TimestampRegion + offsetBytes / BlockSizeBytes * 8, cancellationToken);
        for (var i = 0; i < timestamps.Length; i++) timestamps.Span[i] = BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan(i * 8));
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        for (var i = 0; i < _handles.Length; i++)
            if (_handles[i] is { } h && _states[i] != DiskState.Failed) RandomAccess.FlushToDisk(h);
        return ValueTask.CompletedTask;
    }

    public async ValueTask TrimAsync(long offsetBytes, long lengthBytes, CancellationToken cancellationToken)
    {
        Check(offsetBytes, lengthBytes);
        var zero = new byte[Math.Min(lengthBytes, 1 << 20)];
        for (long done = 0; done < lengthBytes; done += zero.Length)
        {
            var n = (int)Math.Min(zero.Length, lengthBytes - done);
            for (var i = 0; i < _handles.Length; i++)
                if (_handles[i] is { } h && _states[i] is DiskState.Active or DiskState.Rebuilding)
                    await RandomAccess.WriteAsync(h, zero.AsMemory(0, n), HeaderBytes + offsetBytes + done, cancellationToken);
        }
    }

    public async ValueTask FailMemberAsync(int memberIndex, string reason)
    {
        await _control.WaitAsync();
        try
        {
            _states[memberIndex] = DiskState.Failed;
            await WriteHeadersAsync();
        }
        finally { _control.Release(); }
    }

    public async ValueTask ReplaceMemberAsync(int memberIndex, string path, CancellationToken cancellationToken)
    {
        await _control.WaitAsync(cancellationToken);
        try
        {
            _handles[memberIndex]?.Dispose();
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            _handles[memberIndex] = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite, FileOptions.None, MemberSizeFor(_dataBytes));
            _paths[memberIndex] = path;
            _states[memberIndex] = DiskState.Rebuilding;
            await WriteHeadersAsync();
        }
        finally { _control.Release(); }
    }

    public async ValueTask RebuildAsync(IProgress<(long Done, long Total)>? progress, CancellationToken cancellationToken)
    {
        var source = FirstReadable();
        var targets = Enumerable.Range(0, _states.Length).Where(i => _states[i] == DiskState.Rebuilding).ToArray();
        var total = StripeCount;
        var buffer = new byte[_stripeDataBytes];
        var tsBytes = new byte[_stripeDataBytes / BlockSizeBytes * 8];
        for (long s = 0; s < total; s++)
        {
            var offset = s * _stripeDataBytes;
            await RandomAccess.ReadAsync(source, buffer, HeaderBytes + offset, cancellationToken);
            await RandomAccess.ReadAsync(source, tsBytes, TimestampRegion + offset / BlockSizeBytes * 8, cancellationToken);
            foreach (var t in targets)
            {
                await RandomAccess.WriteAsync(_handles[t]!, buffer, HeaderBytes + offset, cancellationToken);
                await RandomAccess.WriteAsync(_handles[t]!, tsBytes, TimestampRegion + offset / BlockSizeBytes * 8, cancellationToken);
            }
            _rebuild = (s + 1, total);
            progress?.Report((s + 1, total));
        }
        await _control.WaitAsync(cancellationToken);
        try
        {
            foreach (var t in targets) _states[t] = DiskState.Active;
            await WriteHeadersAsync();
        }
        finally { _control.Release(); }
    }

    public async ValueTask<ScrubResult> ScrubAsync(bool repair, CancellationToken cancellationToken)
    {
        var active = Enumerable.Range(0, _states.Length).Where(i => _states[i] == DiskState.Active && _handles[i] is not null).ToArray();
        long mismatches = 0, repaired = 0;
        var a = new byte[_stripeDataBytes];
        var b = new byte[_stripeDataBytes];
        for (long s = 0; s < StripeCount; s++)
        {
            await RandomAccess.ReadAsync(_handles[active[0]]!, a, HeaderBytes + s * _stripeDataBytes, cancellationToken);
            foreach (var m in active.Skip(1))
            {
                await RandomAccess.ReadAsync(_handles[m]!, b, HeaderBytes + s * _stripeDataBytes, cancellationToken);
                if (!a.AsSpan().SequenceEqual(b))
                {
                    mismatches++;
                    if (repair)
                    {
                        await RandomAccess.WriteAsync(_handles[m]!, a, HeaderBytes + s * _stripeDataBytes, cancellationToken);
                        repaired++;
                    }
                }
            }
        }
        return new ScrubResult(StripeCount, mismatches, 0, repaired);
    }

    public ValueTask DisposeAsync()
    {
        foreach (var h in _handles) h?.Dispose();
        _control.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>Creates and opens <see cref="InterimMirrorStore"/>s (until the engine's RaidVolume lands).</summary>
internal sealed class InterimStoreFactory : IVolumeStoreFactory
{
    public async ValueTask<IVolumeStore> CreateAsync(VolumeInfo volume, long memberSizeBytes, CancellationToken cancellationToken) =>
        await InterimMirrorStore.CreateAsync(volume, VolumeMath.RoundUpToStripes(volume.SizeBytes, volume));

    public ValueTask<IVolumeStore> OpenAsync(VolumeInfo volume, CancellationToken cancellationToken) => InterimMirrorStore.OpenAsync(volume);

    public long MemberSizeBytes(VolumeSpec spec) => 0;
}
