namespace Cloud.Grains.Abstractions;

/// <summary>
/// A request the service refuses: bad input, an unknown name, or a state that forbids it. The message names the
/// bad value and what is allowed; nothing was changed.
/// </summary>
[GenerateSerializer, Alias("cloud.CloudRequestException")]
public sealed class CloudRequestException : Exception
{
    /// <summary>Creates the exception with a message that names the bad value and what is allowed.</summary>
    public CloudRequestException(string message) : base(message) { }

    /// <summary>Creates the exception with an inner cause.</summary>
    public CloudRequestException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>The storage engine failed a request (a disk error beyond redundancy, an unreadable or foreign disk...). The message says what.</summary>
[GenerateSerializer, Alias("cloud.CloudStorageException")]
public sealed class CloudStorageException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CloudStorageException(string message) : base(message) { }
}
