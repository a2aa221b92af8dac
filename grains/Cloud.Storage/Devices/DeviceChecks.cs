namespace Cloud.Storage.Devices;

/// <summary>Argument checks every device shares, so each refuses bad I/O with the same clear message.</summary>
internal static class DeviceChecks
{
    /// <summary>
    /// Checks a vectored I/O: each piece a whole number of sectors, the whole range inside the device; returns its
    /// length.
    /// </summary>
    public static int CheckVector<T>(
        IBlockDevice device,
        long offsetBytes,
        IReadOnlyList<T> pieces,
        Func<T, int> length,
        string piecesName)
    {
        ArgumentNullException.ThrowIfNull(pieces, piecesName);
        long total = 0;
        for (var i = 0; i < pieces.Count; i++)
        {
            var n = length(pieces[i]);
            if (n % device.SectorSizeBytes != 0)
                throw new ArgumentOutOfRangeException(
                    piecesName,
                    n,
                    $"{device.Name}: piece {i} is {n} bytes; each piece must be a multiple of {device.SectorSizeBytes}.");
            total += n;
        }
        if (total > int.MaxValue)
            throw new ArgumentOutOfRangeException(
                piecesName, total, $"{device.Name}: a vectored I/O moves at most {int.MaxValue} bytes.");
        CheckIo(device, offsetBytes, (int)total, piecesName);
        return (int)total;
    }

    public static void CheckIo(IBlockDevice device, long offsetBytes, int lengthBytes, string lengthName)
    {
        var sector = device.SectorSizeBytes;
        if (offsetBytes < 0 || offsetBytes % sector != 0 || offsetBytes > device.CapacityBytes)
            throw new ArgumentOutOfRangeException(nameof(offsetBytes), offsetBytes,
                $"{device.Name}: offset must be a multiple of {sector} in 0..{device.CapacityBytes}.");
        if (lengthBytes % sector != 0 || offsetBytes + lengthBytes > device.CapacityBytes)
            throw new ArgumentOutOfRangeException(lengthName, lengthBytes,
                $"{device.Name}: length must be a multiple of {sector} and end within {device.CapacityBytes} bytes (offset {offsetBytes}).");
    }

    public static void CheckGeometry(string name, long capacityBytes, int sectorSizeBytes, int maxInFlightIo)
    {
        if (sectorSizeBytes is not (512 or 1024 or 2048 or 4096))
            throw new ArgumentOutOfRangeException(
                nameof(sectorSizeBytes), sectorSizeBytes, $"{name}: allowed sector sizes: 512, 1024, 2048, 4096.");
        if (capacityBytes < sectorSizeBytes || capacityBytes % sectorSizeBytes != 0)
            throw new ArgumentOutOfRangeException(
                nameof(capacityBytes),
                capacityBytes,
                $"{name}: capacity must be a positive multiple of {sectorSizeBytes}.");
        if (maxInFlightIo < 1 || maxInFlightIo > MaxInFlightIoLimit)
            throw new ArgumentOutOfRangeException(
                nameof(maxInFlightIo), maxInFlightIo, $"{name}: allowed 1..{MaxInFlightIoLimit}.");
    }

    /// <summary>A sanity bound on configured queue depth.</summary>
    public const int MaxInFlightIoLimit = 4096;
}
