using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// powa_servers rows that are not what they should be: a socket path (a server on the collector's own host),
/// a host list, quotes and ;= in the user and the database, a 10 kB alias, non-ASCII. Each gets a clear error
/// of its own in powa_snapshot_metas.errors; none stops the collector or the other servers.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class HostileServersTests(LabFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task Hostile_powa_servers_rows_are_refused_one_by_one_and_the_others_go_on()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[0];
        var good = await repo.RegisterAsync(remote, 37, "good");
        var socket = await repo.RegisterAsync(remote, 38, "socket");
        var list = await repo.RegisterAsync(remote, 39, "list");
        var quotes = await repo.RegisterAsync(remote, 40, "quotes");
        var alias = await repo.RegisterAsync(remote, 41, "alias");
        var unicode = await repo.RegisterAsync(remote, 42, "unicode");
        await repo.ExecAsync("UPDATE powa_servers SET hostname = '/var/run/postgresql' WHERE id = $1", socket);
        await repo.ExecAsync("UPDATE powa_servers SET hostname = $2 WHERE id = $1", list, $"{remote.Host(39)},{remote.Host(1)}");
        await repo.ExecAsync("UPDATE powa_servers SET username = $2, dbname = $3 WHERE id = $1", quotes, "po'st\"gres;Host=evil=1", "po;wa'=\"x");
        await repo.ExecAsync("UPDATE powa_servers SET alias = $2 WHERE id = $1", alias, new string('a', 10_000) + "\nINJECTED LOG LINE");
        await repo.ExecAsync("UPDATE powa_servers SET hostname = 'hôte-ünïcode.invalid', username = 'ユーザー' WHERE id = $1", unicode);

        await using var node = await CollectorNode.StartAsync(repo);
        await Eventually.HoldsAsync(async () =>
            (await repo.SnapshotTimesAsync(good)).Count >= 2 && (await repo.SnapshotTimesAsync(alias)).Count >= 1
            && (await repo.ErrorsAsync(socket)).Length > 0 && (await repo.ErrorsAsync(list)).Length > 0
            && (await repo.ErrorsAsync(quotes)).Length > 0 && (await repo.ErrorsAsync(unicode)).Length > 0,
            TimeSpan.FromSeconds(40), "snapshots of the good servers, an error for each hostile one");
        foreach (var id in new[] { socket, list, quotes, unicode })
            output.WriteLine($"server {id}: {string.Join(" | ", await repo.ErrorsAsync(id))}");
        Assert.Contains(await repo.ErrorsAsync(socket), e => e.Contains("\"/var/run/postgresql\" is a socket path"));
        Assert.Contains(await repo.ErrorsAsync(list), e => e.Contains("is not one host name or address"));
        // Quotes and ;= stay inside their values: the remote refuses a role and a database that do not exist.
        Assert.Contains(await repo.ErrorsAsync(quotes), e => e.Contains("po'st\"gres;Host=evil=1") && !e.Contains("evil."));
        Assert.Contains(await repo.ErrorsAsync(unicode), e => e.Contains("hôte-ünïcode.invalid"));
        Assert.Empty(await repo.ErrorsAsync(good));
        Assert.Empty(await repo.ErrorsAsync(alias));
        Assert.Empty(await repo.SnapshotTimesAsync(socket));
    }
}
