namespace Cloud.Testing;

/// <summary>
/// A program the beds start (PostgreSQL, Azurite) is not installed here; the message says how to install it. The
/// bench programs print it as one line instead of a stack trace.
/// </summary>
public sealed class MissingPrerequisiteException(string message) : InvalidOperationException(message);
