namespace Cloud.Storage.Format;

/// <summary>
/// A member cannot be used for this volume: no superblock, a corrupt one, another volume's disk,
/// a disk the volume has since dropped (stale), a disk given in the wrong position, or too few
/// members to assemble. The message names the device and what was expected.
/// </summary>
public sealed class VolumeFormatException : IOException
{
    public VolumeFormatException(string message, string? deviceName = null, int memberIndex = -1)
        : base(message)
    {
        DeviceName = deviceName;
        MemberIndex = memberIndex;
    }

    /// <summary>The offending device, when one is to blame.</summary>
    public string? DeviceName { get; }

    /// <summary>The member position the device was given for, or -1.</summary>
    public int MemberIndex { get; }
}
