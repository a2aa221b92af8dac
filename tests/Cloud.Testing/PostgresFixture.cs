using Xunit;

namespace Cloud.Testing;

/// <summary>
/// An xunit class or collection fixture that owns one <see cref="PostgresServer"/> for the tests that
/// share it. Each test takes its own database from <see cref="CreateDatabaseAsync"/>, so tests do not
/// see each other's rows.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private PostgresServer? _server;
    private int _databaseCount;

    /// <summary>The running server; valid after xunit has initialized the fixture.</summary>
    public PostgresServer Server
        => _server ?? throw new InvalidOperationException("The PostgreSQL fixture is not initialized yet.");

    /// <summary>
    /// Creates a fresh, empty database whose name starts with <paramref name="prefix"/>; returns its connection string.
    /// </summary>
    public Task<string> CreateDatabaseAsync(string prefix = "test")
    {
        var number = Interlocked.Increment(ref _databaseCount);
        return Server.CreateDatabaseAsync($"{prefix}_{number}");
    }

    /// <inheritdoc />
    public async Task InitializeAsync() => _server = await PostgresServer.StartAsync();

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
