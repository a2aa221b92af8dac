using Cloud.Grains.Abstractions;
using Cloud.Grains.Hosting;

namespace Cloud.Grains.Volumes;

/// <summary>
/// The silos' write-intent slots (key 0): internal to the silos, so it is not on the client-facing catalog. A silo
/// asks for its slot when it opens a volume, and a survivor asks for a dead silo's slot to recover it.
/// </summary>
[Alias("cloud.IWriterSlotsGrain")]
internal interface IWriterSlotsGrain : IGrainWithIntegerKey
{
    /// <summary>
    /// The write-intent slot (0 to <see cref="WriterSlotsGrain.MaxWriterSlots"/> - 1) of a silo, assigned on first
    /// request and kept for the silo's name, so that silos writing one volume at once never share an intent-bitmap
    /// sector.
    /// </summary>
    [Alias("GetWriterSlot")]
    Task<int> GetWriterSlotAsync(string siloName);
}

/// <summary>The writer-slot grain's persisted state.</summary>
[GenerateSerializer, Alias("cloud.WriterSlotsState")]
internal sealed class WriterSlotsState
{
    /// <summary>Each silo name's slot.</summary>
    [Id(0)]
    public Dictionary<string, int> Slots { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>
/// Assigns write-intent slots. Its own grain, apart from the catalog, because the catalog's creates open volumes and
/// so ask for a slot while they run: with one state, the two writes would interleave on one ETag. Not reentrant, so
/// assignments happen one at a time. A write refused (a stale ETag) or failed ends this activation and assigns
/// nothing, so no slot is handed out that the store does not hold.
/// </summary>
internal sealed class WriterSlotsGrain(
    [PersistentState(CloudGrainStorage.WriterSlotsState, CloudGrainStorage.Name)]
    IPersistentState<WriterSlotsState> state) : Grain, IWriterSlotsGrain
{
    /// <summary>Write-intent slots the engine has (one per concurrently writing process).</summary>
    public const int MaxWriterSlots = 64;

    public async Task<int> GetWriterSlotAsync(string siloName)
    {
        ArgumentException.ThrowIfNullOrEmpty(siloName);
        var slots = state.State.Slots;
        if (slots.TryGetValue(siloName, out var slot)) return slot;
        var used = slots.Values.ToHashSet();
        slot = Enumerable.Range(0, MaxWriterSlots).FirstOrDefault(s => !used.Contains(s), -1);
        if (slot < 0)
            throw new CloudRequestException(
                $"all {MaxWriterSlots} write-intent slots are taken by silo names {string.Join(", ", slots.Keys)}; reuse a silo name");
        var previous = state.State;
        state.State = new WriterSlotsState { Slots = new(slots, StringComparer.Ordinal) { [siloName] = slot } };
        try
        {
            await state.WriteStateAsync();
        }
        catch (Exception ex)
        {
            state.State = previous;
            DeactivateOnIdle();
            throw new CloudStorageException(
                $"the writer slot of silo '{siloName}' was not saved ({ex.GetType().Name}: {ex.Message}); retry");
        }
        return slot;
    }
}
