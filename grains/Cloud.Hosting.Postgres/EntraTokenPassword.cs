using Azure.Core;
using Npgsql;

namespace Cloud.Hosting.Postgres;

/// <summary>
/// The PostgreSQL password of a server that allows Microsoft Entra sign-in only (Azure Database for PostgreSQL with
/// password authentication off): an access token for <see cref="Scope"/> from a <see cref="TokenCredential"/>, in
/// production the silo's managed identity. A token is reused until <see cref="RefreshMargin"/> before it expires, so
/// every new physical connection signs in with a token that is still valid; connections already open stay open when
/// the token they signed in with expires (the server checks it at sign-in only).
/// </summary>
/// <remarks>
/// Npgsql asks for the password on every new physical connection; the pool makes that rare, and the cached token
/// makes it cheap. Npgsql's own <c>UsePeriodicPasswordProvider</c> refreshes on a fixed period; this class refreshes
/// by the token's own expiry instead, which the credential knows and a period would only guess.
/// </remarks>
public sealed class EntraTokenPassword
{
    /// <summary>The token scope of Azure Database for PostgreSQL (all Azure public-cloud servers).</summary>
    public const string Scope = "https://ossrdbms-aad.database.windows.net/.default";

    /// <summary>
    /// How long before its expiry a token is replaced (managed-identity tokens live about 24 h, Entra tokens at least
    /// 1 h; five minutes leaves room for a slow sign-in and for clock skew).
    /// </summary>
    public static readonly TimeSpan RefreshMargin = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The longest a credential may take to hand out a token before the sign-in is failed; <see cref="Apply"/>
    /// shortens it to four fifths of the connection's own timeout, so that a slow credential is reported as such and
    /// not as a bare connection timeout.
    /// </summary>
    public static readonly TimeSpan TokenTimeout = TimeSpan.FromSeconds(30);

    private readonly TokenCredential _credential;
    private readonly TimeProvider _time;
    private readonly string _identity;
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private AccessToken? _token;
    private TimeSpan _fetchTimeout = TokenTimeout;

    /// <param name="credential">Where tokens come from (the managed identity; a test's own in tests).</param>
    /// <param name="identity">Names the identity in error messages (e.g. its client id); never a secret.</param>
    /// <param name="time">The clock that decides when a token is due for refresh.</param>
    public EntraTokenPassword(TokenCredential credential, string identity, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(credential);
        ArgumentNullException.ThrowIfNull(identity);
        _credential = credential;
        _identity = identity;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>How many tokens the credential has handed out so far (for tests and diagnostics).</summary>
    public int TokensFetched { get; private set; }

    /// <summary>
    /// The password for a new connection: the cached token while it has more than <see cref="RefreshMargin"/> left,
    /// else a new one.
    /// </summary>
    /// <exception cref="PostgresSignInException">The credential gave no token; the message names the identity, the
    /// scope and the credential's reason.</exception>
    public async ValueTask<string> GetAsync(CancellationToken cancellationToken = default)
    {
        if (Current() is { } cached) return cached;
        await _refresh.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Another caller may have refreshed while this one waited.
            if (Current() is { } refreshed) return refreshed;
            _token = await FetchAsync(cancellationToken).ConfigureAwait(false);
            TokensFetched++;
            return _token.Value.Token;
        }
        finally
        {
            _refresh.Release();
        }
    }

    /// <summary>
    /// Makes <paramref name="builder"/> sign in with these tokens. The connection string must carry no password.
    /// </summary>
    public NpgsqlDataSourceBuilder Apply(NpgsqlDataSourceBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var connectSeconds = builder.ConnectionStringBuilder.Timeout;
        if (connectSeconds > 0)
        {
            var connectTimeout = TimeSpan.FromSeconds(connectSeconds);
            if (connectTimeout < TokenTimeout) _fetchTimeout = connectTimeout * 0.8;
        }
        // Npgsql needs a synchronous provider for synchronous opens, which Orleans does not make; blocking there is
        // the only option the API leaves.
        builder.UsePasswordProvider(
            _ => GetAsync().AsTask().GetAwaiter().GetResult(),
            (_, cancellationToken) => GetAsync(cancellationToken));
        return builder;
    }

    private string? Current()
    {
        var token = _token;
        return token is { } t && t.ExpiresOn - _time.GetUtcNow() > RefreshMargin ? t.Token : null;
    }

    private async Task<AccessToken> FetchAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_fetchTimeout);
        AccessToken token;
        try
        {
            token = await _credential.GetTokenAsync(new TokenRequestContext([Scope]), timeout.Token)
                .ConfigureAwait(false);
        }
        catch (OperationCanceledException ex)
        {
            // Whether our bound or the connection's own timeout ran out, the sign-in waited on the credential: say
            // so, rather than let the connection report a bare timeout that sends the operator to the network.
            throw new PostgresSignInException(
                $"no Entra token for PostgreSQL from {_identity} within {_fetchTimeout.TotalSeconds:0.#} s (scope {Scope}); check that the managed identity is assigned to this host",
                ex);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw new PostgresSignInException(
                $"no Entra token for PostgreSQL from {_identity} (scope {Scope}): {ex.Message.ReplaceLineEndings(" ")}",
                ex);
        }
        if (string.IsNullOrEmpty(token.Token))
            throw new PostgresSignInException($"{_identity} handed out an empty token for PostgreSQL (scope {Scope})");
        return token;
    }
}

/// <summary>
/// PostgreSQL sign-in failed before reaching the server: the credential gave no token. The message says which
/// identity and why.
/// </summary>
public sealed class PostgresSignInException : InvalidOperationException
{
    /// <summary>Creates the exception with its message.</summary>
    public PostgresSignInException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with its message and the credential's own exception.</summary>
    public PostgresSignInException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>
    /// The sign-in failure inside <paramref name="exception"/> (Npgsql wraps what a password provider throws), or
    /// null.
    /// </summary>
    public static PostgresSignInException? Find(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is PostgresSignInException found) return found;
            if (e is AggregateException aggregate)
                return aggregate.InnerExceptions.Select(Find).FirstOrDefault(f => f is not null);
        }
        return null;
    }
}
