using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Cloud.Client;
using Cloud.Grains.Abstractions;
using Spectre.Console;

namespace Cloud.Cli;

/// <summary>The command tree and each command's action.</summary>
internal static partial class Commands
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    private static readonly Option<string> Gateway = new("--gateway")
    {
        Description = "The silo gateway, HOST:PORT (default: $CLOUD_GATEWAY or 127.0.0.1:30000)",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CLOUD_GATEWAY") ?? CloudClient.DefaultGateway,
    };

    private static readonly Option<bool> JsonOutput = new("--json") { Description = "Print machine-readable JSON", Recursive = true };

    public static RootCommand Build()
    {
        var root = new RootCommand("cloudctl: manage Cloud volumes and move data in and out of them");
        root.Options.Add(Gateway);
        root.Options.Add(JsonOutput);
        AddClusterOptions(root);
        root.Subcommands.Add(VolumeCommand());
        root.Subcommands.Add(WriteCommand());
        root.Subcommands.Add(ReadCommand());
        root.Subcommands.Add(ImportCommand());
        root.Subcommands.Add(ExportCommand());
        root.Subcommands.Add(DiskCommand());
        root.Subcommands.Add(RebuildCommand());
        root.Subcommands.Add(ScrubCommand());
        root.Subcommands.Add(StatusCommand());
        root.Subcommands.Add(DbCommand());
        root.Subcommands.Add(AccessCommand());
        AddExitCodes(root);
        return root;
    }

    /// <summary>Appends the exit codes to every command's description, so that each one's --help lists them.</summary>
    private static void AddExitCodes(Command command)
    {
        var codes = command.Name == "scrub" ? ExitCodes.ScrubHelp : ExitCodes.Help;
        command.Description = $"{command.Description}\n\n{codes}";
        foreach (var sub in command.Subcommands) AddExitCodes(sub);
    }

    private static Argument<string> NameArgument() => new("NAME") { Description = "The volume's name" };

    private static Option<long> SizeOption(string name, string description, bool required) => new(name)
    {
        Description = description,
        Required = required,
        CustomParser = r =>
        {
            var text = r.Tokens.Count == 0 ? "" : r.Tokens[0].Value;
            try { return Sizes.Parse(text); }
            catch (FormatException ex) { r.AddError($"{name}: {ex.Message}"); return 0; }
        },
    };

    /// <summary>
    /// A volume offset: a size that is a multiple of <see cref="CloudVolume.SectorSizeBytes"/>, refused at parse time
    /// (one line, exit 2) before any connection is made.
    /// </summary>
    private static Option<long> OffsetOption()
    {
        var option = SizeOption(
            "--offset", $"Volume offset in bytes (a multiple of {CloudVolume.SectorSizeBytes})", required: true);
        option.Validators.Add(r =>
        {
            var value = r.GetValueOrDefault<long>();
            if (value < 0 || value % CloudVolume.SectorSizeBytes != 0)
                r.AddError($"--offset {value} is not allowed; use a multiple of {CloudVolume.SectorSizeBytes}");
        });
        return option;
    }

    private static Command VolumeCommand()
    {
        var volume = new Command("volume", "Create, list, show and delete volumes");
        volume.Subcommands.Add(VolumeCreateCommand());
        volume.Subcommands.Add(VolumeListCommand());
        volume.Subcommands.Add(VolumeShowCommand());
        volume.Subcommands.Add(VolumeDeleteCommand());
        return volume;
    }

    private static Command VolumeCreateCommand()
    {
        var create = new Command("create", "Create a volume on new file-backed disks, or on the disks --disk names");
        var name = NameArgument();
        var size = SizeOption("--size", "Logical size, e.g. 1GiB", required: true);
        var level = new Option<string>("--level") { Description = "raid0, raid1, raid5 or raid6", Required = true };
        level.AcceptOnlyFromAmong("raid0", "raid1", "raid5", "raid6");
        var disks = new Option<int>("--disks") { Description = "Number of member disks (may be omitted when --disk is given)" };
        var diskList = DiskOption("A member disk, once per member in order: file:PATH or pageblob:CONTAINER/BLOB (default: one member per host's disk pool when the hosts have pools, else new files under the silo's data directory)");
        diskList.AllowMultipleArgumentsPerToken = false;
        var chunk = SizeOption("--chunk", "Bytes per disk per stripe (default 64KiB)", required: false);
        var durable = new Option<bool>("--durable") { Description = "Acknowledge writes only once on disk" };
        create.Arguments.Add(name);
        create.Options.Add(size);
        create.Options.Add(level);
        create.Options.Add(disks);
        create.Options.Add(chunk);
        create.Options.Add(durable);
        create.Options.Add(diskList);
        create.Validators.Add(r =>
        {
            var given = r.GetValue(diskList)?.Length ?? 0;
            var count = r.GetResult(disks) is { Implicit: false } ? r.GetValue(disks) : (int?)null;
            if (given == 0 && count is null) r.AddError("--disks N or at least one --disk DESCRIPTOR is required");
            else if (given > 0 && count is { } n && n != given) r.AddError($"--disks {n} does not match the {given} --disk descriptors given; give one --disk per member, or omit --disks");
        });
        create.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var chunkBytes = p.GetValue(chunk);
            if (chunkBytes > int.MaxValue) throw new CloudRequestException($"--chunk {chunkBytes} is not allowed; use a power of two from 4KiB to 1MiB");
            var members = p.GetValue(diskList) ?? [];
            var spec = new VolumeSpec(p.GetValue(name)!, p.GetValue(size), Enum.Parse<VolumeLevel>(p.GetValue(level)!, ignoreCase: true),
                members.Length > 0 ? members.Length : p.GetValue(disks), chunkBytes == 0 ? VolumeSpec.DefaultChunkSizeBytes : (int)chunkBytes, p.GetValue(durable))
            {
                Disks = [.. members],
            };
            var info = await client.CreateVolumeAsync(spec);
            Print(p, info, () => Console.WriteLine($"created volume {info.Name}: {Sizes.Format(info.SizeBytes)} {Level(info.Level)} on {info.DiskCount} disks, chunk {Sizes.Format(info.ChunkSizeBytes)}{(info.Durable ? ", durable" : "")}"));
        }));
        return create;
    }

    private static Command VolumeListCommand()
    {
        var list = new Command("list", "List volumes");
        list.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var volumes = await client.ListVolumesAsync();
            Print(p, volumes, () =>
            {
                if (volumes.Length == 0) { Console.WriteLine("no volumes"); return; }
                var table = new Table().AddColumns("NAME", "SIZE", "LEVEL", "DISKS", "CHUNK", "DURABLE");
                foreach (var v in volumes)
                    table.AddRow(Markup.Escape(v.Name), Sizes.Format(v.SizeBytes), Level(v.Level), v.DiskCount.ToString(CultureInfo.InvariantCulture), Sizes.Format(v.ChunkSizeBytes), v.Durable ? "yes" : "no");
                AnsiConsole.Write(table);
            });
        }));
        return list;
    }

    private static Command VolumeShowCommand()
    {
        var show = new Command("show", "Show a volume's health, disks and rebuild progress");
        var showName = NameArgument();
        show.Arguments.Add(showName);
        show.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var s = await client.ShowVolumeAsync(p.GetValue(showName)!);
            Print(p, s, () => PrintStatus(s));
        }));
        return show;
    }

    private static Command VolumeDeleteCommand()
    {
        var delete = new Command("delete", "Delete a volume and its disks");
        var deleteName = NameArgument();
        delete.Arguments.Add(deleteName);
        delete.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var n = p.GetValue(deleteName)!;
            await client.DeleteVolumeAsync(n);
            Print(p, new { deleted = n }, () => Console.WriteLine($"deleted volume {n}"));
        }));
        return delete;
    }

    private static void PrintStatus(VolumeStatus s)
    {
        Console.WriteLine($"volume {s.Info.Name}: {Sizes.Format(s.Info.SizeBytes)} {Level(s.Info.Level)}, chunk {Sizes.Format(s.Info.ChunkSizeBytes)}, {s.StripeCount} stripes{(s.Info.Durable ? ", durable" : "")}{(s.PartialParityLog ? ", partial parity log" : "")}");
        Console.WriteLine($"health: {s.Health.ToString().ToLowerInvariant()}{(s.Message is null ? "" : $" ({s.Message})")}");
        var table = new Table().AddColumns("DISK", "STATE", "HOST", "LOCATION");
        foreach (var d in s.Disks)
        {
            // The host whose silos reach the member; "shared" for a page blob or a shared block device.
            var host = s.Info.MemberHost(d.Index) ?? "shared";
            table.AddRow(d.Index.ToString(CultureInfo.InvariantCulture), d.State.ToString().ToLowerInvariant(), Markup.Escape(host), Markup.Escape(d.Path));
        }
        AnsiConsole.Write(table);
        if (s.Rebuild is { } r)
            Console.WriteLine($"rebuild: {(r.Running ? "running" : "done")} {r.StripesDone}/{r.StripesTotal} stripes ({r.Fraction:P0}), {Sizes.Format(r.BytesMoved)} moved{(r.Error is null ? "" : $", error: {r.Error}")}");
    }

    /// <summary>A repeatable --disk option; each value is checked for the descriptor form here, the silo checks it again.</summary>
    private static Option<string[]> DiskOption(string description)
    {
        var option = new Option<string[]>("--disk") { Description = description };
        option.Validators.Add(r =>
        {
            foreach (var token in r.Tokens)
            {
                var text = token.Value;
                var colon = text.IndexOf(':', StringComparison.Ordinal);
                var scheme = colon > 0 ? text[..colon] : "";
                var rest = colon > 0 ? text[(colon + 1)..] : "";
                var ok = scheme.Equals("file", StringComparison.OrdinalIgnoreCase) ? rest.Length > 0
                    : scheme.Equals("pageblob", StringComparison.OrdinalIgnoreCase) && rest.IndexOf('/', StringComparison.Ordinal) is var slash && slash > 0 && slash < rest.Length - 1;
                if (!ok) r.AddError($"--disk '{text}' is not allowed; use file:PATH or pageblob:CONTAINER/BLOB");
            }
        });
        return option;
    }

    private static Command WriteCommand()
    {
        var command = new Command("write", "Write a file's bytes into a volume at an offset");
        var name = NameArgument();
        var offset = OffsetOption();
        var from = new Option<FileInfo>("--from") { Description = "The file to write", Required = true };
        command.Arguments.Add(name);
        command.Options.Add(offset);
        command.Options.Add(from);
        command.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var file = p.GetValue(from)!;
            if (!file.Exists) throw new CloudRequestException($"--from '{file.FullName}' does not exist");
            var volume = await client.OpenVolumeAsync(p.GetValue(name)!);
            var at = p.GetValue(offset);
            if (at + file.Length > volume.SizeBytes)
                throw new CloudRequestException($"--from '{file.Name}' ({file.Length} bytes) at --offset {at} ends past the volume's {volume.SizeBytes} bytes");
            await CopyAsync(p, file.OpenRead(), volume, at, file.Length, "write", toVolume: true);
            Print(p, new { volume = volume.Name, offset = at, bytes = file.Length }, () => Console.WriteLine($"wrote {file.Length} bytes to {volume.Name} at {at}"));
        }));
        return command;
    }

    private static Command ReadCommand()
    {
        var command = new Command("read", "Read a range of a volume into a file");
        var name = NameArgument();
        var offset = OffsetOption();
        var length = SizeOption("--length", "Bytes to read", required: true);
        var to = new Option<FileInfo>("--to") { Description = "The file to write", Required = true };
        command.Arguments.Add(name);
        command.Options.Add(offset);
        command.Options.Add(length);
        command.Options.Add(to);
        command.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var volume = await client.OpenVolumeAsync(p.GetValue(name)!);
            var at = p.GetValue(offset);
            var n = p.GetValue(length);
            if (n <= 0 || at + n > volume.SizeBytes)
                throw new CloudRequestException($"--length {n} at --offset {at} is not allowed; the volume has {volume.SizeBytes} bytes");
            var file = p.GetValue(to)!;
            await CopyAsync(p, new FileStream(file.FullName, FileMode.Create, FileAccess.Write), volume, at, n, "read", toVolume: false);
            Print(p, new { volume = volume.Name, offset = at, bytes = n, file = file.FullName }, () => Console.WriteLine($"read {n} bytes of {volume.Name} at {at} into {file.FullName}"));
        }));
        return command;
    }

    private static Command ImportCommand()
    {
        var command = new Command("import", "Copy an image file into a volume from offset 0");
        var name = NameArgument();
        var file = new Argument<FileInfo>("FILE") { Description = "The image file" };
        command.Arguments.Add(name);
        command.Arguments.Add(file);
        command.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var f = p.GetValue(file)!;
            if (!f.Exists) throw new CloudRequestException($"image '{f.FullName}' does not exist");
            var volume = await client.OpenVolumeAsync(p.GetValue(name)!);
            if (f.Length > volume.SizeBytes)
                throw new CloudRequestException($"image '{f.Name}' has {f.Length} bytes; volume {volume.Name} holds {volume.SizeBytes}");
            await CopyAsync(p, f.OpenRead(), volume, 0, f.Length, "import", toVolume: true);
            await volume.FlushAsync();
            Print(p, new { volume = volume.Name, bytes = f.Length }, () => Console.WriteLine($"imported {f.Length} bytes into {volume.Name}"));
        }));
        return command;
    }

    private static Command ExportCommand()
    {
        var command = new Command("export", "Copy a whole volume into an image file");
        var name = NameArgument();
        var file = new Argument<FileInfo>("FILE") { Description = "The image file to write" };
        command.Arguments.Add(name);
        command.Arguments.Add(file);
        command.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var f = p.GetValue(file)!;
            var volume = await client.OpenVolumeAsync(p.GetValue(name)!);
            await CopyAsync(p, new FileStream(f.FullName, FileMode.Create, FileAccess.Write), volume, 0, volume.SizeBytes, "export", toVolume: false);
            Print(p, new { volume = volume.Name, bytes = volume.SizeBytes, file = f.FullName }, () => Console.WriteLine($"exported {volume.SizeBytes} bytes of {volume.Name} into {f.FullName}"));
        }));
        return command;
    }

    private static Command DiskCommand()
    {
        var disk = new Command("disk", "Fail or replace a member disk");
        foreach (var verb in new[] { "fail", "replace" })
        {
            var command = new Command(verb, verb == "fail" ? "Mark a member disk failed" : "Replace a failed member with a fresh disk (then rebuild)");
            var name = NameArgument();
            var index = new Argument<int>("INDEX") { Description = "The member's index (0-based)" };
            var replacement = DiskOption("The new disk: file:PATH or pageblob:CONTAINER/BLOB (default: a new disk of the member's kind next to it; for a volume on the hosts' disk pools, a new file in the pool of a host that holds no other member)");
            var host = new Option<string>("--host")
            {
                Description = "For a volume on the hosts' disk pools: put the new member in this host's pool (a host that holds no other member of the volume)"
            };
            command.Arguments.Add(name);
            command.Arguments.Add(index);
            replacement.Validators.Add(r =>
            {
                if (r.Tokens.Count > 1) r.AddError($"--disk is given {r.Tokens.Count} times; disk replace takes one new disk");
            });
            if (verb == "replace")
            {
                command.Options.Add(replacement);
                command.Options.Add(host);
                command.Validators.Add(r =>
                {
                    if (r.GetResult(replacement) is not null && r.GetResult(host) is not null)
                        r.AddError("give either --disk or --host for the new member, not both");
                });
            }
            command.SetAction((p, ct) => RunAsync(p, async client =>
            {
                var n = p.GetValue(name)!;
                var i = p.GetValue(index);
                var s = verb == "fail"
                    ? await client.FailDiskAsync(n, i, "failed by cloudctl")
                    : p.GetValue(host) is { } h
                        ? await client.ReplaceDiskOnHostAsync(n, i, h)
                        : await client.ReplaceDiskAsync(n, i, p.GetValue(replacement)?.SingleOrDefault());
                Print(p, s, () => PrintStatus(s));
            }));
            disk.Subcommands.Add(command);
        }
        return disk;
    }

    private static Command RebuildCommand()
    {
        var command = new Command("rebuild", "Rebuild replaced disks from the others");
        var name = NameArgument();
        var wait = new Option<bool>("--wait") { Description = "Wait for the rebuild to finish, with a progress bar" };
        command.Arguments.Add(name);
        command.Options.Add(wait);
        command.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var n = p.GetValue(name)!;
            var status = await client.StartRebuildAsync(n);
            if (p.GetValue(wait))
            {
                async Task<RebuildStatus> Poll()
                {
                    while (true)
                    {
                        var r = await client.GetRebuildAsync(n) ?? status;
                        if (!r.Running) return r;
                        await Task.Delay(200, ct);
                    }
                }
                if (p.GetValue(JsonOutput)) status = await Poll();
                else
                {
                    await AnsiConsole.Progress().StartAsync(async ctx =>
                    {
                        var task = ctx.AddTask($"rebuild {Markup.Escape(n)}", maxValue: 1.0);
                        while (true)
                        {
                            var r = await client.GetRebuildAsync(n) ?? status;
                            task.Value = r.Fraction;
                            // A catch-up passes every stripe but moves only those written while a member was away.
                            task.Description = $"rebuild {Markup.Escape(n)}: {Sizes.Format(r.BytesMoved)} moved";
                            if (!r.Running) { status = r; break; }
                            await Task.Delay(200, ct);
                        }
                    });
                }
                if (status.Error is not null) throw new CloudRequestException($"rebuild of {n} failed: {status.Error}");
            }
            Print(p, status, () => Console.WriteLine(status.Running ? $"rebuild of {n} started" : $"rebuild of {n} done: {status.StripesDone}/{status.StripesTotal} stripes, {Sizes.Format(status.BytesMoved)} moved"));
        }));
        return command;
    }

    private static Command ScrubCommand()
    {
        var command = new Command("scrub", "Check every stripe's parity and checksums");
        var name = NameArgument();
        var repair = new Option<bool>("--repair") { Description = "Rewrite parity that disagrees with the data" };
        command.Arguments.Add(name);
        command.Options.Add(repair);
        command.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var n = p.GetValue(name)!;
            ScrubResult? result = null;
            if (p.GetValue(JsonOutput)) result = await client.ScrubAsync(n, p.GetValue(repair));
            else
            {
                await AnsiConsole.Status().StartAsync($"scrubbing {Markup.Escape(n)}", async _ => result = await client.ScrubAsync(n, p.GetValue(repair)));
            }
            Print(p, result!, () => Console.WriteLine($"scrub of {n}: {result!.StripesChecked} stripes checked, {result.Mismatches} parity mismatches, {result.ChecksumErrors} checksum errors, {result.Repaired} repaired{(result.Unrecoverable > 0 ? $", {result.Unrecoverable} could not be repaired" : "")}"));
            return Unrepaired(result!, p.GetValue(repair)) ? ExitCodes.ScrubUnrepaired : ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>
    /// True when the scrub left something wrong: without repair, anything it found; with repair, a stripe it could not
    /// put right (every other stripe found wrong was repaired, or was rewritten by a writer meanwhile).
    /// </summary>
    private static bool Unrepaired(ScrubResult result, bool repair) =>
        repair ? result.Unrecoverable > 0 : result.Mismatches > 0 || result.ChecksumErrors > 0;

    private static Command StatusCommand()
    {
        var command = new Command("status", "Every silo with its live load and delegation counts");
        command.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var status = await client.GetClusterStatusAsync();
            Print(p, status, () =>
            {
                var table = new Table().AddColumns("SILO", "PENDING", "QUEUE", "DISK ms", "FLOOR ms", "CPU %", "WAIT ms", "SCORE", "STATE", "REUSED", "NEW", "WRITES", "HOST", "POOL FREE");
                foreach (var s in status.Silos)
                {
                    table.AddRow(Markup.Escape(s.SiloName), Sizes.Format(s.PendingDelegatedBytes), s.QueueDepth.ToString(CultureInfo.InvariantCulture),
                        s.DiskLatencyMs.ToString("0.0", CultureInfo.InvariantCulture), s.DiskFloorMs.ToString("0.0", CultureInfo.InvariantCulture),
                        s.CpuPercent.ToString("0", CultureInfo.InvariantCulture),
                        s.SchedulingDelayMs.ToString("0.0", CultureInfo.InvariantCulture), s.Score.ToString("0.0", CultureInfo.InvariantCulture),
                        s.Draining ? "draining" : s.Overloaded ? "overloaded" : "ok",
                        s.DelegationsReused.ToString(CultureInfo.InvariantCulture), s.DelegationsNew.ToString(CultureInfo.InvariantCulture), s.WritesPerformed.ToString(CultureInfo.InvariantCulture),
                        Markup.Escape(s.HostName),
                        // A silo without a disk pool shows "-", so that "no pool" and "a full pool" read differently.
                        s.PoolCapacityBytes > 0 ? $"{Sizes.Format(s.PoolFreeBytes)} of {Sizes.Format(s.PoolCapacityBytes)}" : "-");
                }
                AnsiConsole.Write(table);
                Console.WriteLine($"{status.Silos.Length} silo(s), mean score {status.MeanScore.ToString("0.0", CultureInfo.InvariantCulture)}");
            });
        }));
        return command;
    }

    /// <summary>Copies between a file and a volume in 4 MiB pieces, with a progress bar unless --json.</summary>
    private static async Task CopyAsync(ParseResult p, Stream file, CloudVolume volume, long offset, long length, string label, bool toVolume)
    {
        const int pieceBytes = CloudVolume.MaxRequestBytes;
        await using var fileStream = file;
        await using var volumeStream = volume.OpenStream();
        volumeStream.Position = offset;
        var buffer = new byte[pieceBytes];
        async Task Run(Action<long> progress)
        {
            for (long done = 0; done < length;)
            {
                var n = (int)Math.Min(pieceBytes, length - done);
                if (toVolume)
                {
                    await fileStream.ReadExactlyAsync(buffer.AsMemory(0, n));
                    await volumeStream.WriteAsync(buffer.AsMemory(0, n));
                }
                else
                {
                    await volumeStream.ReadExactlyAsync(buffer.AsMemory(0, n));
                    await fileStream.WriteAsync(buffer.AsMemory(0, n));
                }
                done += n;
                progress(n);
            }
        }
        if (p.GetValue(JsonOutput) || Console.IsErrorRedirected && Console.IsOutputRedirected) await Run(_ => { });
        else await AnsiConsole.Progress().StartAsync(async ctx =>
        {
            var task = ctx.AddTask($"{label} {Markup.Escape(volume.Name)}", maxValue: Math.Max(1, length));
            await Run(n => task.Increment(n));
        });
    }

    private static string Level(VolumeLevel level) => level.ToString().ToLowerInvariant();

    private static void Print<T>(ParseResult p, T value, Action human)
    {
        if (p.GetValue(JsonOutput)) Console.WriteLine(JsonSerializer.Serialize(value, Json));
        else human();
    }

    /// <summary>
    /// Connects, runs, and turns any failure into one stderr line and <see cref="ExitCodes.Failed"/>.
    /// </summary>
    private static Task<int> RunAsync(ParseResult p, Func<CloudClient, Task> action) =>
        RunAsync(p, async client =>
        {
            await action(client);
            return ExitCodes.Ok;
        });

    /// <summary>
    /// Connects, runs an action that chooses its own exit code, and turns any failure into one stderr line and
    /// <see cref="ExitCodes.Failed"/>.
    /// </summary>
    private static async Task<int> RunAsync(ParseResult p, Func<CloudClient, Task<int>> action)
    {
        ClusterCertificates? tls;
        try
        {
            tls = ClientCertificates(p);
        }
        catch (ClusterCertificateException ex)
        {
            // A certificate that cannot be used is bad usage: nothing was sent.
            Console.Error.WriteLine($"cloudctl: {ex.Message}");
            return ExitCodes.Usage;
        }
        try
        {
            await using var client = await ConnectAsync(p, tls);
            return await action(client);
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine($"cloudctl: {ErrorLine(ex)}");
            return ExitCodes.Failed;
        }
        finally
        {
            tls?.Dispose();
        }
    }

    /// <summary>The flag of <c>volume create</c> that sets each <see cref="VolumeSpec"/> property a silo may refuse.</summary>
    private static readonly Dictionary<string, string> FlagOfField = new(StringComparer.Ordinal)
    {
        [nameof(VolumeSpec.Name)] = "NAME",
        [nameof(VolumeSpec.SizeBytes)] = "--size",
        [nameof(VolumeSpec.Level)] = "--level",
        [nameof(VolumeSpec.DiskCount)] = "--disks",
        [nameof(VolumeSpec.ChunkSizeBytes)] = "--chunk",
        [nameof(VolumeSpec.Disks)] = "--disk",
    };

    /// <summary>
    /// The failure as one line. A refusal that names a field of the request (<see cref="CloudRequestException.Field"/>)
    /// is told in the words the user typed: the field's name at the start of the message becomes cloudctl's flag.
    /// </summary>
    private static string ErrorLine(Exception ex)
    {
        if (ex is AggregateException { InnerException: { } inner }) ex = inner;
        var message = ex.Message.ReplaceLineEndings(" ");
        if (ex is CloudRequestException { Field: { } field } && FlagOfField.TryGetValue(field, out var flag))
            message = message.StartsWith(field + " ", StringComparison.Ordinal) ? flag + message[field.Length..] : $"{flag}: {message}";
        return message;
    }
}
