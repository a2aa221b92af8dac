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

    /// <summary>
    /// Creates the exception for a bad field of a request record: <paramref name="message"/> starts with the field's
    /// name and value (e.g. <c>ChunkSizeBytes 3000 is not a power of two between 4096 and 1048576</c>), so that a tool
    /// can put its own name of the field (a command-line flag) in its place.
    /// </summary>
    public CloudRequestException(string field, string message) : base(message) => Field = field;

    /// <summary>
    /// The property of the request record (<see cref="VolumeSpec"/>) whose value was refused, e.g.
    /// <c>nameof(VolumeSpec.ChunkSizeBytes)</c>; null when the refusal is not about one field.
    /// </summary>
    [Id(0)]
    public string? Field { get; }
}

/// <summary>The storage engine failed a request (a disk error beyond redundancy, an unreadable or foreign disk...). The message says what.</summary>
[GenerateSerializer, Alias("cloud.CloudStorageException")]
public sealed class CloudStorageException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CloudStorageException(string message) : base(message) { }
}
