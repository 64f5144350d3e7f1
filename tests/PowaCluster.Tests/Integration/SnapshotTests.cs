using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;

namespace PowaCluster.Tests.Integration;

[Collection(LabCollection.Name)]
public sealed class SnapshotTests(LabFixture fx)
{
    /// <summary>The history tables every snapshot of a lab server writes rows to.</summary>
    internal static readonly string[] HistoryTables =
    [
        "powa_statements_history_current", "powa_kcache_metrics_current", "powa_qualstats_quals_history_current",
        "powa_wait_sampling_history_current", "powa_stat_bgwriter_history_current",
    ];

    [Fact]
    public async Task Registered_server_is_snapshotted_at_its_frequency_into_every_history_table()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[0];
        var srvid = await repo.RegisterAsync(remote, 1, "freq");
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 4,
                TimeSpan.FromSeconds(45), "4 snapshots of the server", () => PowaLab.WorkAsync(remote));
        }

        // Start to start at the configured 5 s: the reference drifts to about 15 s.
        var times = await repo.SnapshotTimesAsync(srvid);
        var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds).ToList();
        Assert.All(gaps, g => Assert.InRange(g, 4.0, 6.5));

        foreach (var table in HistoryTables)
            Assert.True(await repo.CountAsync(table, srvid) > 0, $"{table} has no row for server {srvid}");
        Assert.Empty(await repo.ErrorsAsync(srvid));
        Assert.True(await repo.ScalarAsync<long>("SELECT count(*) FROM powa_databases WHERE srvid = $1", srvid) > 0);

        // Versions saved from the remote.
        var remoteVersion = await remote.ScalarAsync<string>(PowaLab.Database, "SHOW server_version");
        Assert.Equal(remoteVersion, await repo.ScalarAsync<string>("SELECT version FROM powa_servers WHERE id = $1", srvid));
        var kcache = await remote.ScalarAsync<string>(PowaLab.Database, "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_kcache'");
        Assert.Equal(kcache, await repo.ScalarAsync<string>(
            "SELECT version FROM powa_extensions WHERE srvid = $1 AND extname = 'pg_stat_kcache'", srvid));
        Assert.Empty(await repo.ListAsync<string>(
            "SELECT extname FROM powa_extensions WHERE srvid = $1 AND version IS NULL", srvid));
    }

    [Fact]
    public async Task The_writers_vacuum_the_staging_tables_they_store_through()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[0];
        var srvid = await repo.RegisterAsync(remote, 1, "vacuum");
        var settings = CollectorNode.FastSettings();
        settings.StagingVacuumInterval = TimeSpan.FromSeconds(2);
        const string vacuums = "SELECT coalesce(sum(vacuum_count), 0)::bigint FROM pg_stat_user_tables WHERE relname LIKE '%\\_src\\_tmp'";
        const string statementsVacuumed =
            "SELECT vacuum_count::bigint FROM pg_stat_user_tables WHERE relname = 'powa_statements_src_tmp'";
        Assert.Equal(0, await repo.ScalarAsync<long>(vacuums));
        await using (await CollectorNode.StartAsync(repo, settings))
        {
            // vacuum_count counts VACUUM commands, not autovacuum's: ours.
            await Eventually.HoldsAsync(async () => await repo.ScalarAsync<long>(statementsVacuumed) >= 2,
                TimeSpan.FromSeconds(45), "powa_statements_src_tmp vacuumed twice", () => PowaLab.WorkAsync(remote));
        }
        Assert.True((await repo.SnapshotTimesAsync(srvid)).Count >= 2);
        Assert.Empty(await repo.ErrorsAsync(srvid));
    }

    [Fact]
    public async Task A_role_that_owns_no_staging_table_vacuums_none_and_says_how_many_it_may_not()
    {
        var repo = await fx.NewRepositoryAsync();
        var role = $"vacuum_stranger_{repo.Database}";
        await repo.ExecAsync($"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'stranger-pw-7'");
        var owner = new Npgsql.NpgsqlConnectionStringBuilder(repo.ConnectionString.ConnectionString);
        var stranger = new Npgsql.NpgsqlConnectionStringBuilder(owner.ConnectionString) { Username = role, Password = "stranger-pw-7" };
        try
        {
            await using (var c = new Npgsql.NpgsqlConnection(stranger.ConnectionString))
            {
                await c.OpenAsync();
                var (vacuumed, notAllowed) = await Collector.Postgres.RepositoryQueries.VacuumStagingAsync(c, CancellationToken.None);
                Assert.Equal(0, vacuumed);
                Assert.True(notAllowed >= 5, $"{notAllowed} staging tables seen as not allowed");
            }
            await using (var c = new Npgsql.NpgsqlConnection(owner.ConnectionString))
            {
                await c.OpenAsync();
                var (vacuumed, notAllowed) = await Collector.Postgres.RepositoryQueries.VacuumStagingAsync(c, CancellationToken.None);
                Assert.True(vacuumed >= 5, $"{vacuumed} staging tables vacuumed");
                Assert.Equal(0, notAllowed);
            }
        }
        finally { await repo.ExecAsync($"DROP ROLE IF EXISTS {role}"); }
    }

    [Fact]
    public async Task Remote_without_pg_qualstats_records_that_error_and_stores_the_other_datasources()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[0];
        var srvid = await repo.RegisterAsync(remote, 2, "noqual", dbname: LabFixture.NoQualstatsDb);
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 3,
                TimeSpan.FromSeconds(30), "3 snapshots of the server without pg_qualstats");
        }
        // Every snapshot stored the datasources that work, not only every other one; and from the second
        // snapshot on, the failing step has a savepoint, so every datasource is read in one remote transaction
        // and shares its now() (the first failure starts a new transaction for the datasources after it).
        var snapshots = await repo.SnapshotTimesAsync(srvid);
        var withStatements = await repo.ListAsync<DateTime>(
            "SELECT DISTINCT (record).ts FROM powa_statements_history_current WHERE srvid = $1 ORDER BY 1", srvid);
        Assert.Equal(snapshots.Count, withStatements.Count);
        Assert.Equal(snapshots.Skip(1), withStatements.Skip(1));
        var errors = await repo.ErrorsAsync(srvid);
        Assert.Contains(errors, e => e.Contains("powa_qualstats_src"));
        Assert.DoesNotContain(errors, e => e.Contains("powa_statements_src") || e.Contains("powa_kcache_src"));
        Assert.True(await repo.CountAsync("powa_statements_history_current", srvid) > 0);
        Assert.True(await repo.CountAsync("powa_kcache_metrics_current", srvid) > 0);
        Assert.Equal(0, await repo.CountAsync("powa_qualstats_quals_history_current", srvid));
    }

    [Fact]
    public async Task Unreachable_server_wrong_password_and_missing_powa_record_their_errors_while_another_server_keeps_its_schedule()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[1];
        var good = await repo.RegisterAsync(remote, 1, "good");
        var closedPort = FreeLoopbackPort();
        var unreachable = await repo.RegisterAsync(remote, 2, "unreachable", port: closedPort);
        const string wrongPassword = "wrong-s3cret-Pa55";
        var badPassword = await repo.RegisterAsync(remote, 3, "badpass", password: wrongPassword);
        var noPowa = await repo.RegisterAsync(remote, 4, "nopowa", dbname: "postgres");
        await using (await CollectorNode.StartAsync(repo))
        {
            await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(good)).Count >= 4,
                TimeSpan.FromSeconds(45), "4 snapshots of the good server");
        }
        var times = await repo.SnapshotTimesAsync(good);
        Assert.All(times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds), g => Assert.InRange(g, 4.0, 6.5));
        Assert.Empty(await repo.ErrorsAsync(good));

        var unreachableErrors = await repo.ErrorsAsync(unreachable);
        Assert.Contains(unreachableErrors, e => e.Contains($"cannot connect to 127.0.0.2:{closedPort}/powa"));
        var passwordErrors = await repo.ErrorsAsync(badPassword);
        Assert.Contains(passwordErrors, e => e.Contains("28P01") && e.Contains("127.0.0.3"));
        Assert.DoesNotContain(passwordErrors.Concat(unreachableErrors), e => e.Contains(wrongPassword) || e.Contains(remote.Password));
        Assert.Contains(await repo.ErrorsAsync(noPowa), e => e.Contains("the powa extension is not installed in database \"postgres\""));
        Assert.Empty(await repo.SnapshotTimesAsync(unreachable));
        Assert.Empty(await repo.SnapshotTimesAsync(badPassword));
        Assert.Empty(await repo.SnapshotTimesAsync(noPowa));
    }

    static int FreeLoopbackPort()
    {
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        var port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}
