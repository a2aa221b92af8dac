using System.Numerics;
using Cloud.Storage.Volumes;

namespace Cloud.Nbd;

/// <summary>A volume as one connection serves it: the size constraints and flags derived from its geometry.</summary>
internal sealed class NbdExport
{
    /// <summary>The smallest block size we advertise; the protocol's preferred size must be at least this.</summary>
    public const int MinPreferredBlockBytes = 512;

    /// <summary>The protocol's upper bound on the minimum block size.</summary>
    public const int MaxMinimumBlockBytes = 1 << 16;

    private NbdExport(
        IBlockVolume volume,
        int minimumBlockBytes,
        int preferredBlockBytes,
        int maxPayloadBytes,
        int volumeIoPieceBytes)
    {
        Volume = volume;
        MinimumBlockBytes = minimumBlockBytes;
        PreferredBlockBytes = preferredBlockBytes;
        MaxPayloadBytes = maxPayloadBytes;
        VolumeIoPieceBytes = volumeIoPieceBytes;
    }

    public IBlockVolume Volume { get; }

    /// <summary>
    /// True when the client's grant is read-only: NBD_FLAG_READ_ONLY is advertised and writes fail with EPERM.
    /// </summary>
    public bool ReadOnly { get; init; }

    public string Name => Volume.Name;

    public long SizeBytes => Volume.CapacityBytes;

    public int MinimumBlockBytes { get; }

    public int PreferredBlockBytes { get; }

    public int MaxPayloadBytes { get; }

    /// <summary>
    /// The largest piece handed to the volume in one call (a multiple of its block); larger requests are split.
    /// </summary>
    public int VolumeIoPieceBytes { get; }

    /// <summary>
    /// The length of the piece of a split request that starts at <paramref name="offsetBytes"/> with
    /// <paramref name="remainingBytes"/> left: at most <see cref="VolumeIoPieceBytes"/>, ending on a block boundary
    /// when more follows, so that a request which starts inside a block makes the volume rewrite only its first and
    /// last blocks, not one at every piece boundary.
    /// </summary>
    public int PieceBytes(long offsetBytes, long remainingBytes)
    {
        var piece = VolumeIoPieceBytes - (int)(offsetBytes % Volume.BlockSizeBytes);
        return (int)Math.Min(piece, remainingBytes);
    }

    /// <summary>The same export for a client whose grant is read-only.</summary>
    public NbdExport AsReadOnly() => new(Volume, MinimumBlockBytes, PreferredBlockBytes, MaxPayloadBytes, VolumeIoPieceBytes)
    {
        ReadOnly = true,
    };

    /// <summary>
    /// Derives the advertised constraints, or returns an error naming what about the volume cannot be served.
    /// </summary>
    /// <remarks>
    /// The minimum block size is the volume's sector (<see cref="IBlockVolume.SectorSizeBytes"/>, 512 bytes for the
    /// engine): every disk people use takes 512-byte sectors, and a loop device or file system on the export issues
    /// them. The preferred size is at least the volume's block, so clients that heed it never make the volume read
    /// and rewrite a block for them.
    /// </remarks>
    public static NbdExport? TryCreate(IBlockVolume volume, int maxPayloadBytes, out string? error)
    {
        var block = volume.BlockSizeBytes;
        if (block < MinPreferredBlockBytes || block > MaxMinimumBlockBytes || !BitOperations.IsPow2(block))
        {
            error = $"volume '{volume.Name}' has block size {block}; NBD needs a power of two from {MinPreferredBlockBytes} to {MaxMinimumBlockBytes}";
            return null;
        }
        var sector = volume.SectorSizeBytes;
        if (sector < MinPreferredBlockBytes || sector > block || !BitOperations.IsPow2(sector))
        {
            error = $"volume '{volume.Name}' has sector size {sector}; NBD needs a power of two from {MinPreferredBlockBytes} to its block size {block}";
            return null;
        }
        if (volume.CapacityBytes < 0 || volume.CapacityBytes % block != 0)
        {
            error =
                $"volume '{volume.Name}' has capacity {volume.CapacityBytes}, not a multiple of its block size {block}";
            return null;
        }
        var piece = volume.MaxIoSizeBytes / block * block;
        if (piece < block)
        {
            error = $"volume '{volume.Name}' has a maximum I/O size of {volume.MaxIoSizeBytes}, below its block size {block}";
            return null;
        }
        // The protocol wants a power of two for the preferred size. A RAID-5 stripe of 3 data chunks is not one:
        // round down, which still avoids read-modify-write for clients that write whole multiples of it.
        long preferred = Math.Max(volume.PreferredIoSizeBytes, block);
        preferred = (long)BitOperations.RoundUpToPowerOf2((ulong)preferred) == preferred
            ? preferred
            : (long)(BitOperations.RoundUpToPowerOf2((ulong)preferred) >> 1);
        var maxPayload = maxPayloadBytes / block * block;
        if (preferred > maxPayload)
        {
            preferred = (long)BitOperations.RoundUpToPowerOf2((ulong)maxPayload) == maxPayload
                ? maxPayload
                : (long)(BitOperations.RoundUpToPowerOf2((ulong)maxPayload) >> 1);
        }
        error = null;
        return new NbdExport(volume, sector, (int)preferred, maxPayload, piece);
    }
}
