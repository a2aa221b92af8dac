using System.CommandLine;
using Cloud.Grains.Abstractions;
using Spectre.Console;

namespace Cloud.Cli;

/// <summary><c>cloudctl access grant|revoke|list</c>: which NBD client identities may use which volumes.</summary>
internal static partial class Commands
{
    private static Command AccessCommand()
    {
        var access = new Command(
            "access",
            "NBD access: which client identities (TLS-PSK identity or client certificate common name) may use which volumes. A volume without grants is open to every NBD client; once granted, only the identities granted may see and open it.");

        var grant = new Command("grant", "Let IDENTITY use VOLUME over NBD (read-write unless --read-only); replaces an earlier grant of the pair");
        var grantIdentity = IdentityArgument();
        var grantVolume = NameArgument();
        var readOnly = new Option<bool>("--read-only") { Description = "Reads only: the export is read-only and writes fail with EPERM" };
        grant.Arguments.Add(grantIdentity);
        grant.Arguments.Add(grantVolume);
        grant.Options.Add(readOnly);
        grant.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var g = await client.Cluster.GetGrain<IVolumeCatalogGrain>(0)
                .GrantNbdAsync(p.GetValue(grantIdentity)!, p.GetValue(grantVolume)!, p.GetValue(readOnly));
            Print(p, g, () => Console.WriteLine($"granted {g.Identity} {(g.ReadOnly ? "read-only" : "read-write")} access to {g.Volume}"));
        }));
        access.Subcommands.Add(grant);

        var revoke = new Command("revoke", "Take away IDENTITY's access to VOLUME");
        var revokeIdentity = IdentityArgument();
        var revokeVolume = NameArgument();
        revoke.Arguments.Add(revokeIdentity);
        revoke.Arguments.Add(revokeVolume);
        revoke.SetAction((p, ct) => RunAsync(p, async client =>
        {
            string identity = p.GetValue(revokeIdentity)!, volume = p.GetValue(revokeVolume)!;
            if (!await client.Cluster.GetGrain<IVolumeCatalogGrain>(0).RevokeNbdAsync(identity, volume))
                throw new CloudRequestException($"{identity} has no grant on {volume}; 'cloudctl access list' shows the grants");
            Print(p, new { revoked = identity, volume }, () => Console.WriteLine($"revoked {identity}'s access to {volume}"));
        }));
        access.Subcommands.Add(revoke);

        var list = new Command("list", "List the NBD grants");
        list.SetAction((p, ct) => RunAsync(p, async client =>
        {
            var grants = await client.Cluster.GetGrain<IVolumeCatalogGrain>(0).ListNbdGrantsAsync();
            Print(p, grants, () =>
            {
                if (grants.IsEmpty) { Console.WriteLine("no grants: every volume is open to every NBD client"); return; }
                var table = new Table().AddColumns("VOLUME", "IDENTITY", "ACCESS");
                foreach (var g in grants)
                    table.AddRow(Markup.Escape(g.Volume), Markup.Escape(g.Identity), g.ReadOnly ? "read-only" : "read-write");
                AnsiConsole.Write(table);
            });
        }));
        access.Subcommands.Add(list);
        return access;
    }

    /// <summary>An identity argument, checked before any connection is made (one line, exit 2).</summary>
    private static Argument<string> IdentityArgument()
    {
        var identity = new Argument<string>("IDENTITY") { Description = "A TLS-PSK identity or a client certificate's common name" };
        identity.Validators.Add(r =>
        {
            if (NbdGrant.CheckIdentity(r.GetValueOrDefault<string>() ?? "") is { } error) r.AddError(error);
        });
        return identity;
    }
}
