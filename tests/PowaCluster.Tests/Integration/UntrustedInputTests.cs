using Akka.Actor;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Spooling;
using PowaCluster.Collector.Staging;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// What comes from outside the node is not trusted: a file in its spool directory, the rows a remote's own
/// functions return, a peer on the cluster port, another node's clock. Each test plays the attacker (or the
/// wrong clock) on the real thing and looks at the repository afterwards.
/// </summary>
[Collection(OutageCollection.Name)] // beside the outage tests: the main lab's collection is the suite's longest
public sealed class UntrustedInputTests(OutageFixture fx, ITestOutputHelper output)
{
    /// <summary>A datasource's binary COPY as the reader takes it off <paramref name="remote"/>, for server <paramref name="srvid"/>.</summary>
    static async Task<SnapshotStage> ReadStatementsAsync(IPostgresInstance remote, int srvid, DateTime taken, StageBudget budget,
        string serverName = "crafted")
    {
        await using var conn = new NpgsqlConnection(remote.ConnectionString("powa").ConnectionString);
        await conn.OpenAsync();
        await using (var set = new NpgsqlCommand($"SELECT set_config('{ServerConfig.SrvIdSetting}', $1, false)", conn)
        { Parameters = { new() { Value = srvid.ToString() } } })
            await set.ExecuteNonQueryAsync();
        var stage = new SnapshotStage(srvid, serverName, budget) { TakenAtUtc = taken, ServerVersionNum = 150000 };
        await using (var copy = await conn.BeginRawBinaryCopyAsync(
                         Collector.Postgres.RemoteQueries.ExportSql("public", "powa_statements_src")))
            await stage.AppendAsync(copy, CancellationToken.None);
        return stage;
    }

    [Fact]
    public async Task A_crafted_spool_file_runs_no_SQL_stores_nothing_under_another_server_and_is_moved_aside()
    {
        var repo = await fx.NewRepositoryAsync();
        var a = await repo.RegisterAsync(fx.Lab.Remotes[0], 5, "spool-a");
        var b = await repo.RegisterAsync(fx.Lab.Remotes[0], 6, "spool-b");
        var root = Directory.CreateTempSubdirectory("powa-cluster-test-spool-").FullName;
        // Dated an hour ahead: whatever the node stores live first, neither file is fenced as "back in time", so
        // before the fix the first ran its SQL and the second was stored as server b's.
        var ahead = DateTime.UtcNow.AddHours(1);
        var budget = new StageBudget(1 << 24, null);
        string evil, foreign;
        using (var spool = SnapshotSpool.Open(root, await repo.IdentityAsync(), Dsn.Describe(repo.ConnectionString), 1L << 30, TimeSpan.FromDays(2), budget))
        {
            // The target of a datasource given a suffix of SQL, as someone who can write the directory would.
            using (var stage = await ReadStatementsAsync(fx.Lab.Remotes[0], a, ahead, budget))
            {
                stage.AddDatasource("pg_stat_statements",
                    "\"public\".\"powa_statements_src_tmp\" FROM STDIN (FORMAT binary); COMMIT; CREATE TABLE pwned(); --", 0);
                evil = (await spool.For(a).WriteAsync(stage, 1, CancellationToken.None)).Entry.Path;
            }
            // Server b's rows and header in server a's directory.
            using (var stage = await ReadStatementsAsync(fx.Lab.Remotes[0], b, ahead.AddSeconds(30), budget))
            {
                stage.AddDatasource("pg_stat_statements", "\"public\".\"powa_statements_src_tmp\"", 0);
                foreign = (await spool.For(a).WriteAsync(stage, 2, CancellationToken.None)).Entry.Path;
            }
        }
        var settings = CollectorNode.FastSettings();
        settings.SpoolDirectory = root;
        try
        {
            await using var node = await CollectorNode.StartAsync(repo, settings);
            var log = LogCapture.Start(node.System, typeof(Akka.Event.Warning));
            await Eventually.HoldsAsync(() => Task.FromResult(!File.Exists(evil) && !File.Exists(foreign)), TimeSpan.FromSeconds(60),
                "both crafted files out of the spool");
            Assert.Null(await repo.ScalarAsync<string?>("SELECT to_regclass('pwned')::text"));
            var rejected = Path.Combine(Path.GetDirectoryName(evil)!, ServerSpool.RejectedDirectory);
            Assert.True(File.Exists(Path.Combine(rejected, Path.GetFileName(evil))) && File.Exists(Path.Combine(rejected, Path.GetFileName(foreign))),
                "both crafted files moved aside, not deleted");
            await Eventually.HoldsAsync(() => Task.FromResult(log.Count(l => l.Contains("rejected")) >= 2), TimeSpan.FromSeconds(10), "a line each");
            foreach (var line in log.Where(l => l.Contains("rejected"))) output.WriteLine(line);
            Assert.Contains(log, l => l.Contains(Path.GetFileName(evil)) && l.Contains("not a table name"));
            Assert.Contains(log, l => l.Contains(Path.GetFileName(foreign)) && l.Contains($"its header says server {b}"));
            // Nothing of either is in the history: no snapshot of a or b an hour ahead.
            foreach (var id in new[] { a, b })
                Assert.DoesNotContain(await repo.SnapshotTimesAsync(id), t => t.ToUniversalTime() > DateTime.UtcNow.AddMinutes(30));
            // And collection goes on.
            await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync([a, b]), TimeSpan.FromSeconds(30), "a snapshot of each server");
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>
    /// A backlog is the repository's, not its DSN's: spooled by a node that reached the repository as 127.0.0.1,
    /// it is replayed by a node that reaches it as localhost. And a spooled snapshot is stored only under the
    /// server it was read off: server b's row names another host now, so b's spooled snapshot is moved aside.
    /// </summary>
    [Fact]
    public async Task A_backlog_follows_its_repository_under_another_name_and_only_into_the_server_it_was_read_off()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[0];
        var a = await repo.RegisterAsync(remote, 10, "follow-a");
        var b = await repo.RegisterAsync(remote, 11, "follow-b");
        var root = Directory.CreateTempSubdirectory("powa-cluster-test-spool-").FullName;
        // Taken ten minutes ago: replayed before any live snapshot (a server with a backlog spools behind it).
        var taken = DateTime.UtcNow.AddMinutes(-10);
        var budget = new StageBudget(1 << 24, null);
        Assert.Equal("127.0.0.1", repo.ConnectionString.Host);
        using (var spool = SnapshotSpool.Open(root, await repo.IdentityAsync(), Dsn.Describe(repo.ConnectionString), 1L << 30, TimeSpan.FromDays(2), budget))
        {
            foreach (var (id, index) in new[] { (a, 10), (b, 11) })
            {
                using var stage = await ReadStatementsAsync(remote, id, taken, budget, $"{remote.Host(index)}:{remote.Port}");
                stage.AddDatasource("pg_stat_statements", "\"public\".\"powa_statements_src_tmp\"", 0);
                await spool.For(id).WriteAsync(stage, 1, CancellationToken.None);
            }
        }
        var ofA = Directory.GetFiles(Path.Combine(Directory.GetDirectories(root).Single(), $"srv{a}"), "*.snap").Single();
        var ofB = Directory.GetFiles(Path.Combine(Directory.GetDirectories(root).Single(), $"srv{b}"), "*.snap").Single();
        await repo.ExecAsync("UPDATE powa_servers SET hostname = $2 WHERE id = $1", b, remote.Host(12));

        var settings = CollectorNode.FastSettings();
        settings.SpoolDirectory = root;
        var localhost = new NpgsqlConnectionStringBuilder(repo.ConnectionString.ConnectionString) { Host = "localhost" };
        try
        {
            await using var node = await CollectorNode.StartAsync(repo, settings, repositoryDsn: localhost);
            var log = LogCapture.Start(node.System, typeof(Akka.Event.Warning));
            await Eventually.HoldsAsync(() => Task.FromResult(!File.Exists(ofA) && !File.Exists(ofB)), TimeSpan.FromSeconds(60),
                "both spooled snapshots out of the spool");
            // a's stored (replayed); b's not (moved aside, counted with the dropped).
            var stats = node.Runtime.Spool.Stats();
            Assert.Equal((1L, 1L), (stats.Replayed, stats.Dropped));
            Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(ofB)!, ServerSpool.RejectedDirectory, Path.GetFileName(ofB))),
                "b's snapshot moved aside");
            await Eventually.HoldsAsync(() => Task.FromResult(log.Any(l => l.Contains("rejected"))), TimeSpan.FromSeconds(10), "a line about it");
            foreach (var line in log.Where(l => l.Contains("rejected"))) output.WriteLine(line);
            Assert.Contains(log, l => l.Contains(Path.GetFileName(ofB)) && l.Contains($"but server {b} is {remote.Host(12)}:{remote.Port}"));
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>
    /// The repository DSN reaches another database than the one the node started on (the same name, recreated
    /// elsewhere or in its place): nothing goes there; what the node reads is spooled for its own repository, and
    /// the log says why.
    /// </summary>
    [Fact]
    public async Task A_DSN_that_now_reaches_another_database_gets_nothing_and_the_node_spools()
    {
        var repo = await fx.NewRepositoryAsync();
        var srvid = await repo.RegisterAsync(fx.Lab.Remotes[0], 15, "moved-under");
        await using var node = await CollectorNode.StartAsync(repo);
        var log = LogCapture.Start(node.System, typeof(Akka.Event.Warning));
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync([srvid]), TimeSpan.FromSeconds(30), "a first snapshot");

        // The database is renamed away and another one created under its name, with powa and the same server.
        await fx.Lab.Repository.ExecAsync("postgres",
            $"ALTER DATABASE {repo.Database} ALLOW_CONNECTIONS false; " +
            $"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{repo.Database}'");
        await Eventually.HoldsAsync(async () =>
        {
            try { await fx.Lab.Repository.ExecAsync("postgres", $"ALTER DATABASE {repo.Database} RENAME TO {repo.Database}_before"); return true; }
            catch (Npgsql.PostgresException) { return false; } // a backend still leaving
        }, TimeSpan.FromSeconds(10), "the database renamed");
        Npgsql.NpgsqlConnection.ClearAllPools(); // the pooled connections to the old one are gone
        await PowaLab.InstallPowaAsync(fx.Lab.Repository, withStatsExtensions: true, database: repo.Database);
        Assert.Equal(srvid, await repo.RegisterAsync(fx.Lab.Remotes[0], 15, "moved-under"));

        await Eventually.HoldsAsync(() => Task.FromResult(node.Runtime.Spool.Stats().Snapshots >= 2), TimeSpan.FromSeconds(30),
            "snapshots spooled for the node's own repository");
        Assert.Empty(await repo.SnapshotTimesAsync(srvid)); // the new database got none
        Assert.Contains(log, l => l.Contains("now reaches another database"));
        output.WriteLine(log.First(l => l.Contains("now reaches another database")));
    }

    /// <summary>
    /// On <paramref name="remote"/>, powa_statements_src moves a session whose srvid is <paramref name="thief"/> to
    /// <paramref name="victim"/>'s, for the rest of the session, as its superuser could (the original kept
    /// beside it, to restore).
    /// </summary>
    static Task WrapStatementsSourceAsync(IPostgresInstance remote, int thief, int victim) => remote.ExecAsync(PowaLab.Database, $$"""
        DO $do$
        DECLARE args text;
        BEGIN
          SELECT pg_get_function_arguments(p.oid) INTO args FROM pg_proc p
          WHERE p.proname = 'powa_statements_src' AND p.pronamespace = 'public'::regnamespace;
          ALTER FUNCTION public.powa_statements_src(integer) RENAME TO powa_statements_src_orig;
          EXECUTE format($f$CREATE FUNCTION public.powa_statements_src(%s) RETURNS SETOF record LANGUAGE plpgsql AS $b$
            BEGIN
              IF pg_catalog.current_setting('{{ServerConfig.SrvIdSetting}}', true) = %L THEN
                PERFORM pg_catalog.set_config('{{ServerConfig.SrvIdSetting}}', %L, false);
              END IF;
              RETURN QUERY SELECT * FROM public.powa_statements_src_orig($1);
            END $b$$f$, args, '{{thief}}', '{{victim}}');
        END $do$
        """);

    static Task UnwrapStatementsSourceAsync(IPostgresInstance remote) => remote.ExecAsync(PowaLab.Database,
        "DROP FUNCTION public.powa_statements_src(integer); ALTER FUNCTION public.powa_statements_src_orig(integer) RENAME TO powa_statements_src");

    /// <summary>Rows under <paramref name="srvid"/> in every *_src_tmp table and in the statements' history.</summary>
    static async Task<long> RowsOfAsync(TestRepository repo, int srvid)
    {
        var tables = await repo.ListAsync<string>(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid " +
            "AND d.deptype = 'e' WHERE c.relkind = 'r' AND c.relname LIKE '%\\_src\\_tmp' " +
            "AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'srvid')");
        long n = 0;
        foreach (var t in tables.Append("powa_statements_history_current")) n += await repo.CountAsync(t, srvid);
        return n;
    }

    [Fact]
    public async Task A_remote_function_that_changes_the_session_srvid_stores_nothing_under_another_server()
    {
        var repo = await fx.NewRepositoryAsync();
        await using var remote = await LocalPostgres.StartAsync("srvid-thief", loopbackAddresses: 2);
        await PowaLab.InstallPowaAsync(remote, withStatsExtensions: false);
        await PowaLab.MakeWorkloadAsync(remote);
        // Two servers on one remote; the victim is not collected, so any row under its srvid is the thief's.
        var victim = await repo.RegisterAsync(remote, 2, "victim");
        await repo.ExecAsync("UPDATE powa_servers SET frequency = -1 WHERE id = $1", victim);
        var thief = await repo.RegisterAsync(remote, 1, "thief");
        await WrapStatementsSourceAsync(remote, thief, victim);

        await using var node = await CollectorNode.StartAsync(repo);
        var log = LogCapture.Start(node.System, typeof(Akka.Event.Warning));
        string[] errors = [];
        await Eventually.HoldsAsync(async () =>
        {
            errors = await repo.ErrorsAsync(thief);
            return errors.Any(e => e.Contains($"is for srvid {victim}, not for server {thief}"));
        }, TimeSpan.FromSeconds(60), "the thief's snapshot refused, and said in its errors");
        output.WriteLine(errors[^1]);
        // Three snapshots refused whole (each on a new connection), and nothing under the victim.
        await Eventually.HoldsAsync(() => Task.FromResult(log.Count(l => l.Contains($"is for srvid {victim}")) >= 3),
            TimeSpan.FromSeconds(60), "three of the thief's snapshots refused");
        Assert.Equal(0, await RowsOfAsync(repo, victim));
        Assert.Empty(await repo.SnapshotTimesAsync(thief));

        // Its function restored, the thief's next connection (its srvid set anew) stores again.
        await UnwrapStatementsSourceAsync(remote);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync([thief]), TimeSpan.FromSeconds(60), "a snapshot of the thief once restored");
        Assert.Equal(0, await RowsOfAsync(repo, victim));
    }

    [Fact]
    public async Task A_peer_reaches_only_the_actors_the_cluster_talks_to_by_path()
    {
        var repo = await fx.NewRepositoryAsync();
        await using var node = await CollectorNode.StartAsync(repo);
        var address = ((ExtendedActorSystem)node.System).Provider.DefaultAddress;
        // Anyone who reaches the port of a node alone on loopback: a process of the same machine.
        using var stranger = ActorSystem.Create("stranger", Akka.Configuration.ConfigurationFactory.ParseString(
            "akka.actor.provider = remote\nakka.loglevel = WARNING\nakka.stdout-loglevel = WARNING\nakka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }"));
        async Task<bool> AnswersAsync(string path)
        {
            try
            {
                var id = await stranger.ActorSelection(address + path).Ask<ActorIdentity>(new Identify(path), TimeSpan.FromSeconds(5));
                return id.Subject is not null;
            }
            catch (AskTimeoutException) { return false; }
        }
        // The cluster's own paths answer (membership goes through them)...
        Assert.True(await AnswersAsync("/system/cluster/core/daemon"));
        // ...the collector's other actors do not: nothing but those paths is reachable (nor is a PoisonPill, a
        // Kill or a remote deployment accepted, which untrusted mode drops as well).
        Assert.False(await AnswersAsync("/user/connect-ramp"));
        Assert.False(await AnswersAsync(Collector.Hosting.ShardingConfiguration.CoordinatorPath + "/control-desk/notify-listener"));
        Assert.True(await AnswersAsync("/system/cluster/core/daemon"));
    }

    /// <summary>
    /// Two collectors side by side (ConcurrentSnapshotTests) with the two nodes' clocks 3 minutes apart (libfaketime on the second, a powa-cluster process of
    /// its own): a snapshot is timed by its remote's clock, so the fence compares the two collectors' snapshots
    /// by one clock and still stores one per interval. (Timed by each node's own clock, both stored every
    /// interval: their times were 3 minutes apart.)
    /// </summary>
    [Fact]
    public async Task Two_collectors_whose_clocks_are_minutes_apart_store_one_snapshot_per_interval()
    {
        var faketime = Directory.GetDirectories("/usr/lib").Select(d => Path.Combine(d, "faketime", "libfaketime.so.1")).FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("libfaketime is not installed (scripts/install-deps.sh installs it)");
        var repo = await fx.NewRepositoryAsync();
        var srvid = await repo.RegisterAsync(fx.Lab.Remotes[0], 7, "skewed", frequency: 5);
        await repo.ExecAsync("UPDATE powa_snapshot_metas SET snapts = now() WHERE srvid = $1", srvid);
        await using var a = await CollectorNode.StartAsync(repo);
        var skipped = LogCapture.Start(a.System, typeof(Akka.Event.Warning));
        // Ahead, so that it finds the last snapshot long due and collects at once.
        var env = new Dictionary<string, string> { ["LD_PRELOAD"] = faketime, ["FAKETIME"] = "+3m" };
        using var b = StartupErrorTests.Start(env, ["run", "--repository", repo.ConnectionString.ConnectionString]);
        var bOutput = new System.Collections.Concurrent.ConcurrentQueue<string>();
        b.OutputDataReceived += (_, e) => { if (e.Data is { } l) bOutput.Enqueue(l); };
        b.ErrorDataReceived += (_, e) => { if (e.Data is { } l) bOutput.Enqueue(l); };
        b.BeginOutputReadLine();
        b.BeginErrorReadLine();
        try
        {
            var from = DateTime.UtcNow;
            List<DateTime> times = [];
            int Skips() => skipped.Count(l => l.Contains("snapshot skipped")) + bOutput.Count(l => l.Contains("snapshot skipped"));
            // Node b collecting (its first line out), then six snapshots.
            await Eventually.HoldsAsync(() => Task.FromResult(!bOutput.IsEmpty), TimeSpan.FromSeconds(60), "node b started");
            await Eventually.HoldsAsync(async () =>
            {
                times = (await repo.SnapshotTimesAsync(srvid)).Select(t => t.ToUniversalTime()).Where(t => t >= from).ToList();
                return times.Count >= 6;
            }, TimeSpan.FromSeconds(120), "six snapshots");
            var gaps = times.Zip(times.Skip(1), (x, y) => (y - x).TotalSeconds).ToList();
            output.WriteLine($"{times.Count} snapshots, {Skips()} skipped; gaps: {string.Join(", ", gaps.Select(g => g.ToString("F1")))}");
            foreach (var line in bOutput.Where(l => l.Contains("skipped")).Take(2)) output.WriteLine($"node b: {line}");
            // Node b's clock is indeed minutes ahead: its log lines are dated by it.
            var bTime = bOutput.Select(l => DateTime.TryParse(l.Split(' ')[0], null, System.Globalization.DateTimeStyles.AdjustToUniversal, out var t) ? t : (DateTime?)null)
                .FirstOrDefault(t => t is not null);
            output.WriteLine($"node b's first log line dated {bTime:HH:mm:ss} UTC, the test started at {from:HH:mm:ss} UTC");
            Assert.True(bTime - from > TimeSpan.FromMinutes(2.5), "node b's clock is not 3 minutes ahead");
            Assert.True(gaps.Min() >= 2.4, $"two snapshots {gaps.Min():F1} s apart");
            Assert.True(Skips() >= 2, "both collectors collect (each skips what the other stored)");
            Assert.Empty(await repo.ErrorsAsync(srvid));
        }
        finally { await PowaCluster.Lab.Demo.ProcessStop.TerminateAsync(b, TimeSpan.FromSeconds(60)); }
    }
}
