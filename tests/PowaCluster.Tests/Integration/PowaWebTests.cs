using System.Text.Json;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// What we store, read by the one client that reads all of it: each powa-web release of ../shared/vendor on a
/// repository of its archivist (4.1.4 on Debian's, 5.1.5 on 5.1.2, 5.3.0 on 5.3.0), collected by powa-cluster.
/// </summary>
[Collection(PowaReleasesCollection.Name)]
public sealed class PowaWebTests(PowaReleasesFixture fx, ITestOutputHelper output)
{
    /// <summary>The lab's workload statement with quals (PowaLab.WorkloadSql), as pg_stat_statements normalises it.</summary>
    const string WorkloadQuery = "SELECT count(*) FROM lab_t WHERE id > $1 AND v LIKE $2";

    [PowaWebTheory, PowaWebReleases]
    public async Task Powa_web_shows_every_server_we_collected_and_the_collector_status_it_asks_us(string webRelease)
    {
        var archivist = PowaWeb.ArchivistFor(webRelease);
        Assert.True(archivist != "", $"powa-web {webRelease} needs archivist {webRelease[..3]}, which is not built here " +
                                     $"(built: {string.Join(", ", LocalPostgres.PowaReleases)})");
        var lab = fx.Lab(archivist ?? PowaReleasesFixture.Powa4);
        var repo = await fx.NewRepositoryAsync(archivist ?? PowaReleasesFixture.Powa4);
        var ids = new List<int>();
        for (var i = 0; i < 3; i++) ids.Add(await repo.RegisterAsync(lab.Remotes[i % 2], 21 + i, $"web-{i}"));
        var webTask = PowaWeb.StartAsync(webRelease, lab.Repository, repo.Database);
        await using var node = await CollectorNode.StartAsync(repo);
        await using var web = await webTask;
        // Rates need two snapshots; three, with the workload between them, give every datasource rows.
        await Eventually.HoldsAsync(async () =>
            {
                foreach (var id in ids)
                    if ((await repo.SnapshotTimesAsync(id)).Count < 3) return false;
                return true;
            },
            TimeSpan.FromSeconds(60), "3 snapshots of each server", async () =>
            {
                foreach (var r in lab.Remotes) await PowaLab.WorkAsync(r);
            });
        await web.LoginAsync(repo.ConnectionString);
        var range = (await repo.ScalarAsync<DateTime>("SELECT now() - interval '1 hour'"),
                     await repo.ScalarAsync<DateTime>("SELECT now() + interval '1 hour'"));
        var powa5 = archivist is not null;
        var counts = new List<string>();

        async Task<List<JsonElement>> Rows(string path, bool metric = true)
        {
            var rows = await web.RowsAsync(path, metric ? range : null);
            counts.Add($"/{path}: {rows.Count}");
            Assert.True(rows.Count > 0, $"powa-web {webRelease}: no row in /{path}");
            return rows;
        }

        // The servers list.
        var all = await Rows("server/all_servers/", metric: false);
        foreach (var id in ids) Assert.Contains(all, r => r.GetProperty("srvid").GetInt32() == id);
        var servers = await Rows("config/powa_servers/", metric: false);
        foreach (var id in ids) Assert.Contains(servers, r => r.GetProperty("id").GetInt32() == id);

        var withQuals = new HashSet<int>();
        foreach (var id in ids)
        {
            // Per-server metrics, as the server's overview page draws them. PoWA 4 has no wal page, and its archivist
            // (4.1.4) reads no relation on PostgreSQL 15 (powa_all_relations_src(0) returns no row, whoever collects).
            string[] metrics = powa5
                ? ["databases_globals", "by_databases", "bgwriter", "wal", "all_relations", "databases_waits"]
                : ["databases_globals", "by_databases", "bgwriter", "databases_waits"];
            // A page whose rows are rates of events may have none yet: more workload and snapshots until it does.
            // The lab's instances run with fsync off, so its workload seldom waits while pg_wait_sampling looks
            // (every 10 ms): a 50 ms sleep in a tracked statement is a wait (Timeout) it samples for sure.
            foreach (var m in metrics)
                await Eventually.HoldsAsync(async () => (await web.RowsAsync($"server/{id}/metrics/{m}/", range)).Count > 0,
                    TimeSpan.FromSeconds(60), $"powa-web {webRelease}: rows in /server/{id}/metrics/{m}/", async () =>
                    {
                        foreach (var r in lab.Remotes)
                        {
                            await PowaLab.WorkAsync(r);
                            await r.ExecAsync(PowaLab.Database, "SELECT pg_sleep(0.05)");
                        }
                    });
            foreach (var m in metrics) await Rows($"server/{id}/metrics/{m}/");
            // A database's queries, then one query's detail and its quals.
            var queries = await Rows($"server/{id}/metrics/database_all_queries/{PowaLab.Database}/");
            var workload = queries.FirstOrDefault(q => q.GetProperty("query").GetString() == WorkloadQuery);
            Assert.True(workload.ValueKind == JsonValueKind.Object,
                $"powa-web {webRelease}: server {id}'s queries lack the workload's: {string.Join(" | ", queries.Select(q => q.GetProperty("query").GetString()))}");
            var queryId = workload.GetProperty("queryid").GetRawText();
            var detailPath = $"server/{id}/metrics/database/{PowaLab.Database}/query/{queryId}/detail/";
            double calls;
            if (powa5) calls = (await web.GetAsync(detailPath, range)).GetProperty("calls").GetDouble();
            else
            {
                // powa-web 4 renders this widget as HTML: "# of execution:</b> N".
                var (_, html) = await web.GetTextAsync(detailPath, range);
                var m = System.Text.RegularExpressions.Regex.Match(html, @"# of execution:</b>\s*([0-9.]+)");
                Assert.True(m.Success, $"powa-web {webRelease}: no execution count in the query's detail: {html[..Math.Min(html.Length, 1000)]}");
                calls = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            }
            counts.Add($"/{detailPath}: calls {calls}");
            Assert.True(calls > 0, $"powa-web {webRelease}: no call in the query's detail");
            // pg_qualstats is reset by each server's snapshot of an instance: its quals go to one server of each.
            var quals = await web.RowsAsync($"server/{id}/metrics/database/{PowaLab.Database}/query/{queryId}/quals/", range);
            if (quals.Count > 0) withQuals.Add(id);
            // The configuration pages.
            await Rows(powa5 ? $"config/{id}/pg_stat_extensions/" : $"config/{id}/pg_extensions/", metric: false);
            if (powa5)
            {
                await Rows($"config/{id}/pg_db_modules/", metric: false);
                await Rows($"config/{id}/pg_catalogs/", metric: false);
            }
            // The status powa-web asks the collector (WORKERS_STATUS over NOTIFY).
            Assert.Equal("Collector status for this instance: running", await StatusAsync(web, id));
        }
        Assert.True(withQuals.Count >= 1, $"powa-web {webRelease}: no server has the workload's quals");

        // A server that cannot be connected to (nothing listens there), declared while we run: powa-web's own
        // RELOAD, then its status as powa-web shows it.
        var down = await repo.RegisterAsync(lab.Repository, 1, "web-down", port: ClusterTests.FreePorts(1)[0]); // nothing listens there
        var reload = await web.GetAsync("reload_collector/");
        output.WriteLine($"reload_collector: {reload}");
        await Eventually.HoldsAsync(async () => await StatusAsync(web, down) == "Collector status for this instance: no connection to remote server",
            TimeSpan.FromSeconds(30), $"powa-web {webRelease} showing server {down} with no connection");
        Assert.Equal("Collector status for this instance: running", await StatusAsync(web, ids[0]));

        output.WriteLine($"powa-web {webRelease} on archivist {archivist ?? "4.1.4"}, {ids.Count} servers (quals on {withQuals.Count}):");
        foreach (var c in counts) output.WriteLine("  " + c);
    }

    /// <summary>The collector status line of powa-web's server details page.</summary>
    static async Task<string> StatusAsync(PowaWeb web, int srvid)
    {
        var json = await web.GetAsync($"config/{srvid}/server_details/");
        return json.TryGetProperty("messages", out var m)
            ? string.Join(" ", m.EnumerateObject().SelectMany(p => p.Value.EnumerateArray().Select(v => v.GetString())))
            : json.ToString();
    }
}
