using System.Text.RegularExpressions;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>PoWA 5: each archivist 5 release built from ../shared/vendor (5.1.2, 5.3.0) on the repository and the remotes.</summary>
[Collection(PowaReleasesCollection.Name)]
public sealed class Powa5Tests(PowaReleasesFixture fx, ITestOutputHelper output)
{
    /// <summary>History tables every PoWA 5 snapshot of a lab server writes rows to (global datasources).</summary>
    static readonly string[] GlobalHistory =
    [
        "powa_statements_history_current", "powa_kcache_metrics_current", "powa_wait_sampling_history_current",
        "powa_qualstats_quals_history_current", "powa_stat_bgwriter_history_current", "powa_stat_activity_history_current",
    ];

    [Powa5Theory, Powa5Releases]
    public async Task Powa5_servers_are_snapshotted_into_the_global_datasources_with_no_error(string release)
    {
        var repo = await fx.NewRepositoryAsync(release);
        var remote = fx.Lab(release).Remotes[0];
        // Several servers, each with its first (catalog-heavy) snapshot, on the pool's two writers at once.
        var ids = new List<int>();
        for (var i = 0; i < 6; i++) ids.Add(await repo.RegisterAsync(fx.Lab(release).Remotes[i % 2], 10 + i, $"p5-{i}"));
        var srvid = ids[0];
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () =>
                {
                    foreach (var id in ids)
                        if ((await repo.SnapshotTimesAsync(id)).Count < 3) return false;
                    return true;
                },
                TimeSpan.FromSeconds(45), "3 snapshots of each PoWA 5 server", () => PowaLab.WorkAsync(remote));
        }
        foreach (var id in ids) NoErrors(await repo.ErrorsAsync(id));
        foreach (var table in GlobalHistory)
        {
            // pg_qualstats is reset by each snapshot of any server of an instance: its quals go to whichever of the
            // servers of remote 0 (ids 0, 2, 4) came first after the workload.
            var servers = table.StartsWith("powa_qualstats") ? [ids[0], ids[2], ids[4]] : new[] { srvid };
            var rows = 0L;
            foreach (var id in servers) rows += await repo.CountAsync(table, id);
            Assert.True(rows > 0, $"{table} has no row for server(s) {string.Join(", ", servers)}");
        }
        // Versions go to powa_extension_config in PoWA 5.
        var kcache = await remote.ScalarAsync<string>(PowaLab.Database, "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_kcache'");
        Assert.Equal(kcache, await repo.ScalarAsync<string>(
            "SELECT version FROM powa_extension_config WHERE srvid = $1 AND extname = 'pg_stat_kcache'", srvid));
    }

    [Powa5Theory, Powa5Releases]
    public async Task A_powa4_remote_in_a_powa5_repository_gets_a_clear_error_and_the_others_go_on(string release)
    {
        var repo = await fx.NewRepositoryAsync(release);
        var old = await repo.RegisterAsync(fx.Lab(PowaReleasesFixture.Powa4).Remotes[0], 3, "p4-in-p5");
        var good = await repo.RegisterAsync(fx.Lab(release).Remotes[1], 2, "p5-ok");
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(good)).Count >= 2 &&
                                                    (await repo.ErrorsAsync(old)).Length > 0,
                TimeSpan.FromSeconds(40), "the PoWA 5 server snapshotted and the PoWA 4 one refused");
        }
        var error = Assert.Single(await repo.ErrorsAsync(old));
        Assert.Contains($"the remote server has powa 4.1.4 but the repository has powa {release}", error);
        Assert.Empty(await repo.SnapshotTimesAsync(old));
        Assert.Empty(await repo.ErrorsAsync(good));
    }

    [Powa5Theory, Powa5Releases]
    public async Task Per_database_modules_of_two_databases_and_their_catalogs_are_stored_with_the_snapshot_timestamp(string release)
    {
        var repo = await fx.NewRepositoryAsync(release);
        var remote = fx.Lab(release).Remotes[0];
        await WithDatabaseAsync(remote, "app", async db =>
        {
            await remote.ExecAsync(db, "CREATE TABLE app_t(id int primary key); INSERT INTO app_t SELECT generate_series(1, 100); " +
                                   "CREATE INDEX ON app_t(id); SELECT count(*) FROM app_t WHERE id > 5");
            var srvid = await repo.RegisterAsync(remote, 3, "p5-db");
            await using (await CollectorNode.StartAsync(repo))
            {
                await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 2,
                    TimeSpan.FromSeconds(40), "2 snapshots of the server", () => PowaLab.WorkAsync(remote));
            }
            NoErrors(await repo.ErrorsAsync(srvid));
            var appOid = await remote.ScalarAsync<uint>("postgres", $"SELECT oid FROM pg_database WHERE datname = '{db}'");
            var powaOid = await remote.ScalarAsync<uint>("postgres", "SELECT oid FROM pg_database WHERE datname = 'powa'");
            foreach (var oid in new[] { appOid, powaOid })
            {
                Assert.True(await repo.ScalarAsync<long>("SELECT count(*) FROM powa_all_tables_history_current WHERE srvid = $1 AND dbid::bigint = $2", srvid, (long)oid) > 0,
                    $"no all_tables row for database {oid}");
                Assert.True(await repo.ScalarAsync<long>("SELECT count(*) FROM powa_all_indexes_history_current WHERE srvid = $1 AND dbid::bigint = $2", srvid, (long)oid) > 0,
                    $"no all_indexes row for database {oid}");
                // The catalogs of every database on the first snapshot (never refreshed before).
                Assert.True(await repo.ScalarAsync<long>("SELECT count(*) FROM powa_catalog_class WHERE srvid = $1 AND dbid::bigint = $2", srvid, (long)oid) > 0,
                    $"no pg_class catalog row for database {oid}");
                Assert.True(await repo.ScalarAsync<long>("SELECT count(*) FROM powa_catalog_attribute WHERE srvid = $1 AND dbid::bigint = $2", srvid, (long)oid) > 0,
                    $"no pg_attribute catalog row for database {oid}");
            }
            Assert.True(await repo.ScalarAsync<long>("SELECT count(*) FROM powa_catalog_class WHERE srvid = $1 AND relname = 'app_t'", srvid) == 1);
            // One timestamp per snapshot across databases: each per-database ts is a global snapshot's ts.
            var global = await repo.SnapshotTimesAsync(srvid);
            var perDb = await repo.ListAsync<DateTime>(
                "SELECT DISTINCT (record).ts FROM powa_all_tables_history_current WHERE srvid = $1 ORDER BY 1", srvid);
            Assert.NotEmpty(perDb);
            Assert.All(perDb, ts => Assert.Contains(ts, global));
            // The per-database COPYs carry no timestamp in their text: pg_stat_statements (which keys a COPY by its
            // text) has one entry per datasource and database, called at every snapshot, not one per snapshot.
            Assert.Equal(0L, await remote.ScalarAsync<long>(PowaLab.Database, "SELECT count(*) FROM pg_stat_statements " +
                "WHERE query LIKE 'COPY (SELECT s.c1::%' AND query ~ '''\\d{4}-\\d\\d-\\d\\d [0-9:.]+\\+00'''"));
            Assert.True(await remote.ScalarAsync<long>(PowaLab.Database, "SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid " +
                $"WHERE d.datname = '{db}' AND query LIKE 'COPY (SELECT s.c1::%' AND calls >= 2") > 0,
                "no per-database COPY of the app database was called at two snapshots");
        });
    }

    [Powa5Theory, Powa5Releases]
    public async Task Refresh_db_cat_answers_as_the_reference_and_the_next_snapshot_rereads_the_catalogs(string release)
    {
        var repo = await fx.NewRepositoryAsync(release);
        var remote = fx.Lab(release).Remotes[1];
        await WithDatabaseAsync(remote, "cat", async db =>
        {
            var srvid = await repo.RegisterAsync(remote, 4, "p5-cat");
            await using var node = await CollectorNode.StartAsync(repo);
            await using var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
            await web.WaitForCollectorAsync();
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 1,
                TimeSpan.FromSeconds(30), "a first snapshot");
            // Fresh catalogs are not read again before a year: a new table does not show up...
            await remote.ExecAsync(db, "CREATE TABLE cat_new(id int)");
            var count = (await repo.SnapshotTimesAsync(srvid)).Count;
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= count + 2,
                TimeSpan.FromSeconds(20), "two more snapshots");
            Assert.Equal(0L, await repo.ScalarAsync<long>("SELECT count(*) FROM powa_catalog_class WHERE srvid = $1 AND relname = 'cat_new'", srvid));

            // ...until REFRESH_DB_CAT asks for that database; powa-collector 1.3.1's reply, word for word.
            Assert.Equal("REFRESH_DB_CAT OK Catalogs will be refreshed during the next snapshot",
                await web.AskAsync("REFRESH_DB_CAT", "c1", $"{srvid} 1 {db}"));
            await Eventually.HoldsAsync(async () =>
                    await repo.ScalarAsync<long>("SELECT count(*) FROM powa_catalog_class WHERE srvid = $1 AND relname = 'cat_new'", srvid) == 1,
                TimeSpan.FromSeconds(20), "the new table in the refreshed catalog");
            NoErrors(await repo.ErrorsAsync(srvid));

            Assert.Equal("REFRESH_DB_CAT ERROR Server id 999 not found", await web.AskAsync("REFRESH_DB_CAT", "c2", "999 0"));
            Assert.Equal("REFRESH_DB_CAT ERROR Caller asked for 2 db, but found 1: ['x']", await web.AskAsync("REFRESH_DB_CAT", "c3", $"{srvid} 2 x"));
            Assert.Equal("REFRESH_DB_CAT ERROR invalid number of databases y", await web.AskAsync("REFRESH_DB_CAT", "c4", $"{srvid} y"));
            Assert.Equal($"REFRESH_DB_CAT ERROR Command \"['{srvid}']\" malformed", await web.AskAsync("REFRESH_DB_CAT", "c5", $"{srvid}"));
        });
    }

    [Powa5Theory, Powa5Releases]
    public async Task A_renamed_or_dropped_database_does_not_fail_the_snapshots(string release)
    {
        var repo = await fx.NewRepositoryAsync(release);
        var remote = fx.Lab(release).Remotes[0];
        await WithDatabaseAsync(remote, "gone", async db =>
        {
            var srvid = await repo.RegisterAsync(remote, 5, "p5-gone");
            await using var node = await CollectorNode.StartAsync(repo);
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 1, TimeSpan.FromSeconds(30), "a first snapshot");
            await remote.ExecAsync("postgres", $"ALTER DATABASE {db} RENAME TO {db}_r");
            var count = (await repo.SnapshotTimesAsync(srvid)).Count;
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= count + 1, TimeSpan.FromSeconds(20), "a snapshot after the rename");
            await remote.ExecAsync("postgres", $"DROP DATABASE {db}_r WITH (FORCE)");
            count = (await repo.SnapshotTimesAsync(srvid)).Count;
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= count + 2, TimeSpan.FromSeconds(20), "snapshots after the drop");
            NoErrors(await repo.ErrorsAsync(srvid));
        });
    }

    [Powa5Theory, Powa5Releases]
    public async Task Check_on_PoWA_5_reads_its_extension_config_and_its_external_tables(string release)
    {
        var repo = await fx.NewRepositoryAsync(release);
        await repo.RegisterAsync(fx.Lab(release).Remotes[0], 20, "check-powa5");
        var (code, stdout, stderr) = await StartupErrorTests.RunAsync("check", "--repository", repo.ConnectionString.ConnectionString);
        output.WriteLine(stdout + stderr);
        Assert.Equal(0, code);
        Assert.Matches($@"repository powa\s+ok\s+powa {Regex.Escape(release)}", stdout);
        Assert.Matches(@"repository privileges\s+ok\s+.* and \d+ \*_src_tmp tables", stdout);
        Assert.Matches(@"server \d+ \(check-powa5\) \S+\s+ok\s+.*powa 5\.", stdout);
    }

    static void NoErrors(string[] errors) => Assert.True(errors.Length == 0, string.Join("\n", errors));

    /// <summary>A test with a database of its own on the remote, dropped afterwards (renamed to NAME_r too).</summary>
    static async Task WithDatabaseAsync(IPostgresInstance remote, string prefix, Func<string, Task> test)
    {
        var db = $"{prefix}_{Guid.NewGuid():N}"[..12];
        await remote.ExecAsync("postgres", $"CREATE DATABASE {db}");
        try { await test(db); }
        finally
        {
            await remote.ExecAsync("postgres", $"DROP DATABASE IF EXISTS {db} WITH (FORCE)");
            await remote.ExecAsync("postgres", $"DROP DATABASE IF EXISTS {db}_r WITH (FORCE)");
        }
    }
}
