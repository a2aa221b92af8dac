using System.Reflection;
using Cloud.Grains.Abstractions;
using Cloud.Grains.Engine;
using Cloud.Grains.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace Cloud.Grains.Tests;

/// <summary>
/// A copy that is not FUA is acknowledged once its target took it, so its first server's copy may be the only one
/// left when the target fails it. On a host bed the target failed such copies because it could not open the volume
/// while two hosts had just died; the first server then dropped its copy, and a read returned the block the
/// acknowledged write had replaced. The first server now sends a failed copy again until it commits.
/// </summary>
public sealed class FailedCopyResendTests
{
    /// <summary>Armed by the test: how many more engine writes on the delegate fail.</summary>
    private static int s_failuresLeft;

    /// <summary>The silo whose engine writes fail while armed.</summary>
    private static string? s_failingSilo;

    [Fact]
    public async Task AcknowledgedCopy_ItsTargetFailed_IsSentAgain_AndReadsBack()
    {
        await using var cloud = await CloudCluster.StartAsync(
            silos: 2,
            configureBuilder: silo => silo.Services.AddSingleton<IVolumeStoreFactory>(sp => new FailingFactory(
                ActivatorUtilities.CreateInstance<RaidVolumeStoreFactory>(sp),
                sp.GetRequiredService<Orleans.Runtime.ILocalSiloDetails>().Name)));
        var (firstServer, target) = (cloud.Silos[0], cloud.Silos[1]);
        foreach (var s in cloud.Silos) cloud.Service<SiloRuntimeSettings>(s).FixedDelegationTarget = target.Name;
        var name = "resend-" + Guid.NewGuid().ToString("N")[..6];
        await cloud.Client.CreateVolumeAsync(
            new VolumeSpec(name, 4 << 20, VolumeLevel.Raid5, 3, 64 << 10, Durable: false));
        var data = Blocks.Pattern(64 << 10, seed: 7);

        s_failingSilo = target.Name;
        Volatile.Write(ref s_failuresLeft, 1);
        // Acknowledged when the target took the copy: the failure comes after, where the client no longer sees it.
        await cloud.FrontEnd(firstServer).WriteAsync(name, 0, data, forceUnitAccess: false);
        await Eventually.TrueAsync(() => Volatile.Read(ref s_failuresLeft) < 1, "the target's engine write failing");

        await cloud.FrontEnd(firstServer).FlushAsync(name);
        var read = await cloud.FrontEnd(target).ReadAsync(name, 0, data.Length);
        Assert.True(data.AsSpan().SequenceEqual(read), "the acknowledged write was lost after its target failed the copy");
    }

    private sealed class FailingFactory(IVolumeStoreFactory inner, string silo) : IVolumeStoreFactory
    {
        public async ValueTask<IVolumeStore> CreateAsync(VolumeInfo volume, long memberSizeBytes, CancellationToken cancellationToken)
            => FailingStore.Wrap(await inner.CreateAsync(volume, memberSizeBytes, cancellationToken), silo);

        public async ValueTask<IVolumeStore> OpenAsync(VolumeInfo volume, CancellationToken cancellationToken)
            => FailingStore.Wrap(await inner.OpenAsync(volume, cancellationToken), silo);

        public long MemberSizeBytes(VolumeSpec spec, bool spread) => inner.MemberSizeBytes(spec, spread);
    }

    /// <summary>An engine whose versioned write fails while the test has armed it for this silo.</summary>
    public class FailingStore : DispatchProxy
    {
        private IVolumeStore _inner = null!;
        private string _silo = "";

        public static IVolumeStore Wrap(IVolumeStore inner, string silo)
        {
            var proxy = Create<IVolumeStore, FailingStore>();
            var self = (FailingStore)(object)proxy;
            self._inner = inner;
            self._silo = silo;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            if (targetMethod!.Name == nameof(IVolumeStore.WriteAsync) && _silo == s_failingSilo
                && Interlocked.Decrement(ref s_failuresLeft) >= 0)
                return ValueTask.FromException(new CloudStorageException("injected: the engine write failed"));
            try
            {
                return targetMethod.Invoke(_inner, args);
            }
            catch (TargetInvocationException ex) when (ex.InnerException is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
                throw;
            }
        }
    }
}
