using Orleans.Runtime;

namespace Cloud.Postgres.TestSilo;

/// <summary>A counter whose value lives in ADO.NET grain storage on PostgreSQL.</summary>
public interface ICounterGrain : IGrainWithStringKey
{
    /// <summary>Adds <paramref name="amount"/>, writes the state, and returns the new value.</summary>
    Task<long> AddAsync(long amount);

    /// <summary>Returns the value as read from storage at activation (or since updated).</summary>
    Task<long> GetAsync();

    /// <summary>Returns the identity of the activation, so tests can tell a new activation from the old.</summary>
    Task<Guid> GetActivationTokenAsync();

    /// <summary>Asks Orleans to deactivate this activation once the call returns.</summary>
    Task DeactivateAsync();
}

/// <summary>The counter's persisted state.</summary>
[GenerateSerializer]
public sealed class CounterState
{
    /// <summary>The current value.</summary>
    [Id(0)]
    public long Value { get; set; }
}

/// <summary>Implements <see cref="ICounterGrain"/> on the "cloud" ADO.NET storage.</summary>
public sealed class CounterGrain(
    [PersistentState("counter", TestSiloProgram.StorageName)] IPersistentState<CounterState> state) : Grain, ICounterGrain
{
    private readonly Guid _activationToken = Guid.NewGuid();

    /// <inheritdoc />
    public async Task<long> AddAsync(long amount)
    {
        state.State.Value += amount;
        await state.WriteStateAsync();
        return state.State.Value;
    }

    /// <inheritdoc />
    public Task<long> GetAsync() => Task.FromResult(state.State.Value);

    /// <inheritdoc />
    public Task<Guid> GetActivationTokenAsync() => Task.FromResult(_activationToken);

    /// <inheritdoc />
    public Task DeactivateAsync()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }
}
