using Cloud.Grains.Abstractions;
using Cloud.HostBed;
using Cloud.Testing;
using Xunit.Abstractions;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// One bed of six hosts, each with a disk pool in its private 0700 directory, on its own PostgreSQL server, shared by
/// the tests of a class: a host's loss and return are what they try, and each leaves every host running again. The
/// rebuild delay stays at its default, so a short outage is caught up, never rebuilt elsewhere.
/// </summary>
/// <remarks>
/// Writes are delegated by load, so a host killed may be the one writing the stripes, and hold members of the stripe it
/// was writing: the partial parity log of the volume (spread over hosts, so it keeps one) gives back the untouched
/// chunks the killed host held (docs/WRITE-HOLE.md). Until the log, this bed's RAID-6 test failed 1 run in 4 to 9 when a
/// killed host was the delegate, and the bed pinned delegation to a host it never killed.
/// </remarks>
public sealed class SixHostsThatReturn : IAsyncLifetime
{
    private PostgresServer? _postgres;
    private Cloud.HostBed.HostBed? _bed;

    /// <summary>The bed; valid once xunit initialized the fixture.</summary>
    public Cloud.HostBed.HostBed Bed => _bed ?? throw new InvalidOperationException("the bed is not started");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync();
        var options = new HostBedOptions { Hosts = 6, DiskPools = true };
        _bed = await Cloud.HostBed.HostBed.StartAsync(_postgres, options);
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_bed is not null) await _bed.DisposeAsync();
        if (_postgres is not null) await _postgres.DisposeAsync();
    }
}

/// <summary>
/// A volume spans hosts, so losing a host is losing one member (issue 15, items 3, 4 and 6): with one host killed
/// (two for RAID-6) writes through the other hosts go on and none acknowledged is lost; the host restarted after a
/// short outage rejoins and catches up only the stripes written meanwhile, and scrub then finds nothing.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class HostLossTests(SixHostsThatReturn hosts, ITestOutputHelper output) : IClassFixture<SixHostsThatReturn>
{
    /// <summary>
    /// Large enough that one intent region (16 MiB of data, 4 MiB of each member) is under 5 % of a member: writes that
    /// reached a member before its host died and were not flushed are caught up by intent region (they may have been
    /// lost with the host's power), and the writers' pieces of each half lie in one such region.
    /// </summary>
    private const long VolumeBytes = 512L << 20;
    private const int ChunkBytes = 64 << 10;

    /// <summary>Each writer's share: one 1 MiB piece, the away record's smallest region, at its own offset.</summary>
    private const int PieceBytes = 1 << 20;

    /// <summary>A writer's piece is written in writes of this size, so that the kill falls between two of them.</summary>
    private const int WriteBytes = 128 << 10;

    /// <summary>The hosts the writers go through; the hosts killed are members of the volume among the others.</summary>
    private static readonly int[] WriterHosts = [0, 1, 2];

    /// <summary>Bound on a write or read while the cluster notices the kill, and on the catch-up after the return.</summary>
    private static readonly TimeSpan SettleTimeout = TimeSpan.FromMinutes(3);

    private Cloud.HostBed.HostBed Bed => hosts.Bed;

    private void Log(string line) => output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}");

    [Fact]
    public Task RaidFive_OneHostKilledWhileWriting_LosesNoWrite_AndCatchesUpLessThanFivePercentOfAMember() =>
        LoseAndReturnAsync("loss5", VolumeLevel.Raid5, disks: 5, killed: 1);

    [Fact]
    public Task RaidSix_TwoHostsKilledWhileWriting_LoseNoWrite_AndCatchUpLessThanFivePercentOfAMember() =>
        LoseAndReturnAsync("loss6", VolumeLevel.Raid6, disks: 6, killed: 2);

    private async Task LoseAndReturnAsync(string name, VolumeLevel level, int disks, int killed)
    {
        var seed = Environment.TickCount;
        Log($"seed {seed}");
        // A test that failed before its victims returned leaves them down: bring every host back, so that one failure
        // does not become the next test's too.
        var stopped = Enumerable.Range(0, Bed.Hosts.Count).Where(i => !Bed.IsRunning(i)).ToArray();
        foreach (var i in stopped) await Bed.StartHostAsync(i);
        if (stopped.Length > 0) await Bed.WaitForActiveAsync(Bed.Hosts.Count);
        var model = new byte[VolumeBytes];
        VolumeInfo info;
        await using (var creator = await Bed.ConnectToAsync(0))
        {
            await Eventually.TrueAsync(
                async () => (await creator.GetClusterStatusAsync()).Silos.Count(s => s.PoolCapacityBytes > 0) == Bed.Hosts.Count,
                "every host publishes its disk pool");
            info = await creator.CreateVolumeAsync(new VolumeSpec(name, VolumeBytes, level, disks, ChunkBytes, false));
            // Spread over the hosts, so a host's kill is a writer's crash and a member's loss at once: it keeps the log.
            Assert.True((await creator.ShowVolumeAsync(name)).PartialParityLog, "a volume spread over hosts keeps no partial parity log");
        }
        var victims = Enumerable.Range(0, info.DiskCount)
            .Select(i => Bed.Hosts.Single(h => h.Name == info.MemberHost(i)).Index)
            .Where(h => !WriterHosts.Contains(h))
            .Take(killed)
            .ToArray();
        Assert.Equal(killed, victims.Length);
        var victimMembers = Enumerable.Range(0, info.DiskCount)
            .Where(i => victims.Any(v => Bed.Hosts[v].Name == info.MemberHost(i)))
            .ToArray();
        Log($"members on {string.Join(",", info.MemberHosts)}; killing {string.Join(",", victims.Select(v => Bed.Hosts[v].Name))}");

        var clients = new List<Cloud.Client.CloudClient>();
        try
        {
            foreach (var h in WriterHosts) clients.Add(await Bed.ConnectToAsync(h));
            var volumes = await Task.WhenAll(clients.Select(c => CrashScenario.OpenAsync(c, name)));

            // Before the loss: every writer fills its piece of the first half, through its own host, and flushes, as
            // a client does from time to time (what a member took and never saw flushed is caught up on its return).
            await Task.WhenAll(volumes.Select((v, w) => WritePieceAsync(v, model, Offset(w, 0), seed + w)));
            await Task.WhenAll(volumes.Select(v => v.FlushAsync()));

            // Writers through three hosts go on while the victims are killed between two of their writes.
            var kill = new TaskCompletionSource();
            var writers = volumes.Select((v, w) => WritePieceAsync(v, model, Offset(w, 1), seed + 100 + w, kill.Task)).ToArray();
            await Task.Delay(200);
            foreach (var v in victims) await Bed.KillAsync(v);
            kill.SetResult();
            await Task.WhenAll(writers);
            Log("every write acknowledged with the victims gone");

            // Every block reads back as last acknowledged, through every writer's host, with the victims still gone.
            for (var w = 0; w < volumes.Length; w++) await AssertModelAsync(volumes[w], model, $"through {Bed.Hosts[WriterHosts[w]].Name}, victims down");
            var down = await CrashScenario.RetryAsync(() => clients[0].ShowVolumeAsync(name));
            Log($"while down: {down.Health}, disks {string.Join(",", down.Disks.Select(d => d.State))}");
            Assert.All(victimMembers, i => Assert.Equal(DiskState.Missing, down.Disks[i].State));
            Assert.Equal(VolumeHealthState.Degraded, down.Health);
        }
        finally
        {
            foreach (var c in clients) await c.DisposeAsync();
        }

        // The victims come back after the short outage: their members rejoin and catch up by themselves.
        foreach (var v in victims) await Bed.StartHostAsync(v);
        await Bed.WaitForActiveAsync(Bed.Hosts.Count);
        await using var observer = await Bed.ConnectToAsync(WriterHosts[^1]);
        var back = await Eventually.ValueAsync(
            () => CrashScenario.RetryAsync(() => observer.ShowVolumeAsync(name)),
            s => s.Health == VolumeHealthState.Healthy && s.Rebuild is { Running: false },
            SettleTimeout,
            TimeSpan.FromSeconds(1),
            s => $"not caught up after {SettleTimeout}: {s.Health}, disks {string.Join(",", s.Disks.Select(d => d.State))}, rebuild {s.Rebuild}");
        var memberBytes = back.StripeCount * (ChunkBytes + 4096L) + (1 << 20);
        var moved = back.Rebuild!.BytesMoved;
        Log($"caught up: {moved} bytes moved to {killed} member(s) of {memberBytes} bytes each");
        Assert.Null(back.Rebuild.Error);
        Assert.True(moved > 0, "the catch-up moved nothing, yet writes were made while the members were away");
        Assert.True(
            moved < killed * memberBytes / 20,
            $"the catch-up moved {moved} bytes, not less than 5 % of {killed} member(s) of {memberBytes} bytes");

        var scrub = await CrashScenario.RetryAsync(() => observer.ScrubAsync(name, repair: false));
        Log($"scrub: {scrub.StripesChecked} stripes, {scrub.Mismatches} mismatches, {scrub.ChecksumErrors} checksum errors");
        Assert.Equal(0, scrub.Mismatches);
        Assert.Equal(0, scrub.ChecksumErrors);
        foreach (var v in victims)
        {
            await using var client = await Bed.ConnectToAsync(v);
            await AssertModelAsync(await CrashScenario.OpenAsync(client, name), model, $"through {Bed.Hosts[v].Name}, back");
        }
    }

    /// <summary>Writer <paramref name="writer"/>'s piece in half <paramref name="half"/> of the volume.</summary>
    private static long Offset(int writer, int half) => half * (VolumeBytes / 2) + (writer + 1) * (2L << 20);

    /// <summary>
    /// Writes one piece in <see cref="WriteBytes"/> writes, each retried until acknowledged (as an application does
    /// while the cluster notices a dead host), and records each in the model once acknowledged. With
    /// <paramref name="pause"/>, waits for it after the first write.
    /// </summary>
    private async Task WritePieceAsync(Cloud.Client.CloudVolume volume, byte[] model, long offset, int seed, Task? pause = null)
    {
        var data = Blocks.Pattern(PieceBytes, seed);
        for (var at = 0; at < PieceBytes; at += WriteBytes)
        {
            var piece = data.AsMemory(at, WriteBytes);
            var start = DateTime.UtcNow;
            while (true)
            {
                try
                {
                    await volume.WriteAsync(offset + at, piece);
                    break;
                }
                catch (Exception ex) when (DateTime.UtcNow - start < SettleTimeout)
                {
                    Log($"write at {offset + at} failed, again: {ex.GetType().Name}: {ex.Message}");
                    await Task.Delay(500);
                }
            }
            piece.Span.CopyTo(model.AsSpan((int)(offset + at)));
            if (at == 0 && pause is not null) await pause;
        }
    }

    private static async Task AssertModelAsync(Cloud.Client.CloudVolume volume, byte[] model, string context)
    {
        const int step = 8 << 20;
        for (long at = 0; at < model.Length; at += step)
        {
            var read = new byte[step];
            await CrashScenario.RetryAsync(async () => { await volume.ReadAsync(at, read); return 0; });
            var same = read.AsSpan().CommonPrefixLength(model.AsSpan((int)at, step));
            if (same == step) continue;
            // What came back, for the post-mortem: how many blocks differ here, and whether the first is zeros (never
            // written, or written on no member) or other bytes (a reconstruction from a stripe that does not hold).
            var block = same / 4096 * 4096;
            var differing = 0;
            for (var b = 0; b < step; b += 4096)
            {
                if (!read.AsSpan(b, 4096).SequenceEqual(model.AsSpan((int)at + b, 4096))) differing++;
            }
            var zeros = !read.AsSpan(block, 4096).ContainsAnyExcept((byte)0);
            Assert.Fail(
                $"{context}: block {(at + same) / 4096} differs from the last acknowledged write ({differing} of "
                + $"{step / 4096} blocks from {at / 4096} differ; the first reads {(zeros ? "zeros" : "other bytes")})");
        }
    }
}
