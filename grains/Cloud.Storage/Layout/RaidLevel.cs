namespace Cloud.Storage.Layout;

/// <summary>The redundancy scheme of a volume. The numeric values are stored in the superblock.</summary>
public enum RaidLevel
{
    /// <summary>Striping without redundancy: capacity of every member, no failure tolerated.</summary>
    Raid0 = 0,

    /// <summary>N-way mirror: every member holds every chunk; survives the loss of all but one member.</summary>
    Raid1 = 1,

    /// <summary>Striping with one rotating parity chunk (XOR), left-symmetric like Linux md's default.</summary>
    Raid5 = 5,

    /// <summary>
    /// Striping with two rotating parity chunks, P (XOR) and Q (GF(2^8) syndrome), md's RAID-6 layout.
    /// </summary>
    Raid6 = 6,
}
