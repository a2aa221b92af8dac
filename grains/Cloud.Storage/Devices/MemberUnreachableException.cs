namespace Cloud.Storage.Devices;

/// <summary>
/// A device could not be reached at all: the host that serves it is down, declared dead, or cut off. Unlike its base
/// <see cref="BlockDeviceException"/>, it says nothing about the disk itself, so a volume marks the member away
/// (<see cref="Volumes.MemberState.Missing"/>) rather than failed: the disk rejoins when its host returns and catches up
/// only the stripes written meanwhile. An error the serving host reports about its disk stays a plain
/// <see cref="BlockDeviceException"/>, and fails the member.
/// </summary>
public sealed class MemberUnreachableException : BlockDeviceException
{
    /// <summary>Creates the exception for device <paramref name="deviceName"/>.</summary>
    public MemberUnreachableException(string deviceName, string message, Exception? inner = null)
        : base(deviceName, message, inner)
    {
    }
}
