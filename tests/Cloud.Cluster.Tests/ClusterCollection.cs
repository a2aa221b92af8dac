using Cloud.Testing;

namespace Cloud.Cluster.Tests;

/// <summary>
/// One PostgreSQL server for every cluster test, and no parallel runs: each test starts three silo processes, and
/// two such clusters at once on a 2-core machine would only measure contention.
/// </summary>
[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<PostgresFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "cluster";
}
