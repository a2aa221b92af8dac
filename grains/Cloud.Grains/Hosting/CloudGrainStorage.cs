namespace Cloud.Grains.Hosting;

/// <summary>
/// The names under which Cloud's cluster state (the volume catalog, the writer slots, the partition clocks) is kept
/// as Orleans grain state: one storage provider name, and one state name per kind of state.
/// </summary>
public static class CloudGrainStorage
{
    /// <summary>
    /// The grain storage provider the Cloud grains use: ADO.NET on PostgreSQL in cluster mode, a
    /// <see cref="FileGrainStorage"/> under <c>{data}/state</c> in localhost mode.
    /// </summary>
    public const string Name = "cloud";

    /// <summary>The catalog grain's state: every volume's definition.</summary>
    public const string CatalogState = "catalog";

    /// <summary>The writer-slot grain's state: each silo name's write-intent slot.</summary>
    public const string WriterSlotsState = "writer-slots";

    /// <summary>A partition-lock grain's state: the highest timestamp it may hand out before reserving more.</summary>
    public const string ClockState = "clock";

    /// <summary>The automatic rebuild's state: the replacement of a lost host's member under way.</summary>
    public const string HostDownRebuildState = "host-down-rebuild";
}
