using Cloud.Grains.Delegation;
using Cloud.Grains.Engine;
using Cloud.Grains.FirstServers;
using Cloud.Grains.Locks;
using Cloud.Grains.RaidWorkers;
using Cloud.Grains.Volumes;
using Cloud.Storage.Azure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans;
using Orleans.Storage;

namespace Cloud.Grains.Hosting;

/// <summary>Adds the Cloud grains and their silo services to an Orleans silo.</summary>
public static class CloudSiloBuilderExtensions
{
    /// <summary>
    /// Registers the Cloud services: options (validated at start), the load table and its publisher, the
    /// silo-bound and load-based placement directors, the RAID worker's pieces, the first server and the catalog.
    /// Cluster state is grain state in the storage named <see cref="CloudGrainStorage.Name"/>: a storage of that name
    /// registered before this call (ADO.NET on PostgreSQL) is used, and otherwise a <see cref="FileGrainStorage"/>
    /// under
    /// <c>{data}/state</c>. Either way a data directory's state files from before are imported once at start
    /// (<see cref="StateImport"/>).
    /// </summary>
    public static ISiloBuilder AddCloud(this ISiloBuilder builder, Action<CloudOptions>? configure = null)
    {
        // Grain calls carry the caller's Activity.Current, so that one write's spans on the first server and on its
        // target silo form one trace (CloudTracing); Orleans starts its own spans only while something listens.
        builder.AddActivityPropagation();
        var options = builder.Services.AddOptions<CloudOptions>();
        options.BindConfiguration(CloudOptions.SectionName);
        if (configure is not null) options.Configure(configure);
        options.ValidateOnStart();
        builder.Services.TryAddEnumerable(
            ServiceDescriptor.Singleton<IValidateOptions<CloudOptions>, CloudOptionsValidator>());
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<SiloUsage>();
        builder.Services.AddSingleton<SiloRuntimeSettings>();
        builder.Services.AddSingleton<LoadTable>();
        builder.Services.AddHostedService<LoadPublisher>();
        builder.Services.AddHostedService<SchedulingDelayProbe>();
        builder.Services.AddSingleton<PartitionClockStore>();
        builder.Services.AddSingleton<CatalogStore>();
        builder.Services.TryAddKeyedSingleton<IGrainStorage>(
            CloudGrainStorage.Name, (sp, key) => FileGrainStorage.Create(sp, (string)key!));
        builder.Services.AddSingleton<StateImport>();
        builder.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(
            sp => sp.GetRequiredService<StateImport>());
        builder.Services.AddSingleton<VolumeDirectory>();
        builder.Services.AddSingleton<VolumeReach>();
        // The disk service: this host's pools and member files served to the other hosts' silos, and its client.
        builder.Services.AddSingleton<Disks.DiskPools>();
        builder.Services.AddSingleton<Disks.DiskServer>();
        builder.Services.AddSingleton<Disks.HostDisks>();
        builder.Services.AddSingleton<Disks.DiskStreamListener>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Disks.DiskStreamListener>());
        builder.Services.AddSingleton(sp => new Disks.DiskStreamClient(
            sp.GetRequiredService<IOptions<Orleans.Configuration.SiloMessagingOptions>>().Value.ResponseTimeout,
            sp.GetService<Disks.DiskStreamTls>()));
        builder.Services.AddSingleton<Disks.MemberPlacement>();
        // The automatic rebuild of a host gone for good: every silo asks the cluster's one rebuild grain to check.
        builder.Services.AddHostedService<Disks.HostDownRebuildService>();
        builder.Services.AddHostedService<Disks.MemberReturn>();
        builder.Services.AddOptions<PageBlobAccountOptions>()
            .Configure<IConfiguration>((o, configuration) => MemberDisks.BindPageBlobAccount(configuration, o));
        // The host's Entra credential, when it registered one, signs in to the page-blob account.
        builder.Services.TryAddSingleton(
            sp => new BlockDeviceFactory(
                sp.GetRequiredService<IOptions<PageBlobAccountOptions>>().Value,
                sp.GetService<global::Azure.Core.TokenCredential>()));
        builder.Services.AddSingleton<ClusterSuperblockCoordinator>();
        builder.Services.AddHostedService<DeadSiloRecovery>();
        builder.Services.TryAddSingleton<IVolumeStoreFactory, RaidVolumeStoreFactory>();
        builder.Services.AddSingleton<OpenVolumeCache>();
        builder.Services.AddSingleton<WriterSlotRecovery>();
        builder.Services.AddSingleton<HeldLocks>();
        builder.Services.AddSingleton(typeof(GrainReferences<>));
        builder.Services.AddSingleton<ReadLeases>();
        builder.Services.AddSingleton<WriteLeases>();
        builder.Services.AddSingleton<VersionsInFlight>();
        builder.Services.AddSingleton<BatchExecutor>();
        builder.Services.AddSingleton<WriteScheduler>();
        builder.Services.AddSingleton<RaidMaintenance>();
        builder.Services.AddSingleton<FirstServerWrites>();
        builder.Services.AddSingleton<VolumeWorkers>();
        builder.Services.AddSingleton<LockedReads>();
        builder.Services.AddSingleton<SectorWrites>();
        builder.Services.AddSingleton<FirstServerService>();
        builder.Services.AddPlacementDirector<SiloBoundPlacement, SiloBoundPlacementDirector>();
        builder.Services.AddPlacementDirector<LoadBasedPlacement, LoadBasedPlacementDirector>();
        builder.Services.AddPlacementDirector<ScoredPlacement, ScoredPlacementDirector>();
        return builder;
    }
}
