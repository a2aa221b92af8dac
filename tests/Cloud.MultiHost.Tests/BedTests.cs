using System.Net;
using Cloud.HostBed;
using Cloud.Testing;

namespace Cloud.MultiHost.Tests;

/// <summary>
/// The bed itself: every host is its own address, user and private directory, and the cluster knows each by its
/// address.
/// </summary>
[Collection(MultiHostCollection.Name)]
public sealed class BedTests(ThreeHosts hosts) : IClassFixture<ThreeHosts>
{
    private Cloud.HostBed.HostBed Bed => hosts.Bed;

    [Fact]
    public async Task MembershipTable_ListsEachSiloAtItsOwnAddress()
    {
        var members = (await Bed.MembershipAsync()).Where(m => m.Status == Cloud.HostBed.HostBed.ActiveStatus).ToList();
        Assert.Equal(Bed.Hosts.Count, members.Count);
        foreach (var host in Bed.Hosts)
        {
            var row = Assert.Single(members, m => m.SiloName == host.Name);
            Assert.Equal(host.Address, row.Address);
            Assert.Equal(Bed.SiloPort, row.Port);
        }
        Assert.DoesNotContain(members, m => m.Address.Equals(IPAddress.Loopback));
    }

    [Fact]
    public async Task EveryHost_ServesItsGatewayAtItsOwnAddress()
    {
        foreach (var host in Bed.Hosts)
        {
            await using var client = await Bed.ConnectToAsync(host.Index);
            // A silo lists the others once their load reports reached it, a few seconds after they joined.
            var expected = Bed.Hosts.Select(h => h.Name).Order().ToList();
            var status = await Eventually.ValueAsync(
                () => client.GetClusterStatusAsync(),
                s => s.Silos.Select(x => x.SiloName).Order().SequenceEqual(expected),
                TimeSpan.FromSeconds(30),
                TimeSpan.FromMilliseconds(250),
                s => $"{host.Name} lists {string.Join(", ", s.Silos.Select(x => x.SiloName))}, not {string.Join(", ", expected)}");
            Assert.Equal(expected, status.Silos.Select(s => s.SiloName).Order());
        }
    }

    [Fact]
    public void EachHostsDirectory_IsPrivateToItsOwnUser()
    {
        Assert.True(
            Bed.SeparateUsers, "the bed runs each host as its own Unix user only when the tests run as root (CI does)");
        foreach (var host in Bed.Hosts)
        {
            Assert.Equal(
                UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute,
                File.GetUnixFileMode(host.Directory));
            // The silo itself wrote its data directory, as its own user.
            Assert.True(Directory.Exists(host.DataDirectory));
            foreach (var other in Bed.Hosts.Where(o => o.Index != host.Index))
            {
                Assert.NotEqual(host.Uid, other.Uid);
                Assert.NotEqual(0, UnixUsers.RunAs(other.Uid, other.Gid, "ls", host.DataDirectory));
            }
            Assert.Equal(0, UnixUsers.RunAs(host.Uid, host.Gid, "ls", host.DataDirectory));
        }
    }
}
