using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Spooling;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>
/// The repository stopped (pg_ctl stop, then start) while servers are collected: the snapshots due meanwhile
/// are spooled on the node's disk and replayed after it, in order, with their own timestamps, so that the
/// history has no hole; pg_qualstats' quals read (and reset) during the outage are there too.
/// </summary>
[Collection(OutageCollection.Name)]
public sealed class SpoolTests(OutageFixture fx, ITestOutputHelper output)
{
    const int Frequency = 5;

    [Fact]
    public async Task Every_interval_of_a_repository_outage_is_in_the_history_after_it()
    {
        var instance = fx.Repository;
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 10; i++) ids.Add(await repo.RegisterAsync(fx.Remote, 1 + i, $"spool-{i}", frequency: Frequency));
        await using var workload = await Workload.StartAsync(fx.Lab, TimeSpan.FromMilliseconds(200));
        await using var node = await CollectorNode.StartAsync(repo);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");

        await instance.StopAsync();
        var stoppedAt = DateTime.UtcNow;
        var region = ActorRegistry.For(node.System).Get<ServerCollector>();
        async Task<IReadOnlyList<ServerStatus>> StatusesAsync() =>
            await Task.WhenAll(ids.Select(id => region.Ask<ServerStatus>(new GetServerStatus(id), TimeSpan.FromSeconds(3))));
        try
        {
            // The outage lasts until every server has spooled six snapshots (30 s at 5 s): enough for every rule
            // below, whatever the machine's speed; half-way, each says the repository is down.
            await Eventually.HoldsAsync(async () => (await StatusesAsync()).All(st => st.SpooledSnapshots >= 3), TimeSpan.FromSeconds(60),
                "three snapshots of every server spooled");
            foreach (var st in await StatusesAsync()) Assert.Equal(CollectorStatus.NoRepository, st.Status);
            await Eventually.HoldsAsync(async () => (await StatusesAsync()).All(st => st.SpooledSnapshots >= 6), TimeSpan.FromSeconds(60),
                "six snapshots of every server spooled");
        }
        finally { await instance.StartAgainAsync(); }
        var startedAt = DateTime.UtcNow;
        var outage = startedAt - stoppedAt;
        output.WriteLine($"repository stopped from {stoppedAt:HH:mm:ss.fff} to {startedAt:HH:mm:ss.fff} UTC");

        // powa-cluster status, as an operator runs it while the backlog drains: each server's spooled snapshots.
        string? backlogLine = null;
        while (backlogLine is null && DateTime.UtcNow - startedAt < TimeSpan.FromSeconds(30))
        {
            var (_, stdout, _) = await StartupErrorTests.RunAsync("status", "--repository", repo.ConnectionString.ConnectionString, "--timeout", "3");
            backlogLine = stdout.Split('\n').FirstOrDefault(l => l.Contains("spool-") && Regex.IsMatch(l, @" \d+ \(\d+\.\d MB, oldest \d+ (s|min)\)"));
        }
        output.WriteLine($"powa-cluster status during the drain: {backlogLine}");
        Assert.NotNull(backlogLine);

        await Eventually.HoldsAsync(async () =>
        {
            foreach (var id in ids)
                if ((await region.Ask<ServerStatus>(new GetServerStatus(id), TimeSpan.FromSeconds(3))).SpooledSnapshots > 0) return false;
            return await repo.AllSnapshottedAsync(ids, startedAt.AddSeconds(Frequency));
        }, TimeSpan.FromSeconds(120), "every spooled snapshot replayed, then a live one");
        output.WriteLine($"drained {(DateTime.UtcNow - startedAt).TotalSeconds:F1} s after the restart");

        var expected = outage.TotalSeconds / Frequency;
        long qualsOfRemote = 0;
        foreach (var id in ids)
        {
            var times = (await HistoryTimesAsync(repo, id)).Select(t => t.ToUniversalTime()).ToList();
            var during = times.Count(t => t > stoppedAt && t < startedAt);
            var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds).ToList();
            var quals = await repo.ScalarAsync<long>("SELECT count(DISTINCT ts) FROM powa_qualstats_quals_history_current WHERE srvid = $1 AND ts > $2 AND ts < $3",
                id, stoppedAt, startedAt);
            output.WriteLine($"server {id}: {during} snapshots of the outage (expected {expected:F0} ± 1), longest gap {gaps.Max():F1} s, " +
                             $"{quals} of them with quals");
            Assert.InRange(during, expected - 1, expected + 1);
            Assert.True(gaps.Max() < Frequency * 1.5, $"server {id}: a hole of {gaps.Max():F1} s in its history");
            Assert.True(gaps.Min() > Frequency / 2.0, $"server {id}: two snapshots {gaps.Min():F1} s apart");
            qualsOfRemote += quals;
        }
        // The ten servers share the remote's pg_qualstats, and each snapshot resets it: whichever of them comes
        // first after the workload gets the quals. Over the outage, the remote's quals are in the history.
        Assert.True(qualsOfRemote >= expected, $"pg_qualstats quals in {qualsOfRemote} snapshots of the outage, {expected:F0} intervals");
        // powa-web's per-database sample of powa_statements_history over the outage (its graphs' query).
        var web = await repo.ListAsync<DateTime>(PowaWebSampleByDb, ids[0], stoppedAt, startedAt);
        output.WriteLine($"powa-web's sample query over the outage: {web.Count} rows, {web.Distinct().Count()} distinct ts");
        Assert.InRange(web.Distinct().Count(), expected - 1, expected + 1);
    }

    [Fact]
    public async Task A_remote_restarted_during_an_outage_is_collected_into_the_spool_again()
    {
        var remote = (LocalPostgres)fx.Remote;
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 3; i++) ids.Add(await repo.RegisterAsync(fx.Remote, 15 + i, $"reconnect-{i}", frequency: Frequency));
        await using var node = await CollectorNode.StartAsync(repo);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");
        var region = ActorRegistry.For(node.System).Get<ServerCollector>();
        async Task<IReadOnlyList<ServerStatus>> StatusesAsync() =>
            await Task.WhenAll(ids.Select(id => region.Ask<ServerStatus>(new GetServerStatus(id), TimeSpan.FromSeconds(3))));

        await fx.Repository.StopAsync();
        DateTime remoteBackAt;
        try
        {
            await Eventually.HoldsAsync(async () => (await StatusesAsync()).All(st => st.SpooledSnapshots >= 2), TimeSpan.FromSeconds(60),
                "two snapshots of every server spooled");
            // The remote goes away and comes back while the repository is still down: each server reconnects and
            // goes on with the plan it had, where it used to wait for the repository to give it again.
            await remote.StopAsync();
            try
            {
                await Eventually.HoldsAsync(async () => (await StatusesAsync()).All(st => st.Status == CollectorStatus.NoRemote), TimeSpan.FromSeconds(60),
                    "every server without its remote");
            }
            finally { await remote.StartAgainAsync(); }
            remoteBackAt = DateTime.UtcNow;
            var before = (await StatusesAsync()).ToDictionary(st => st.SrvId, st => st.SpooledSnapshots);
            await Eventually.HoldsAsync(async () => (await StatusesAsync()).All(st => st.SpooledSnapshots >= before[st.SrvId] + 2), TimeSpan.FromSeconds(60),
                "two more snapshots of every server spooled after its remote came back");
        }
        finally { await fx.Repository.StartAgainAsync(); }
        var repositoryBackAt = DateTime.UtcNow;

        await Eventually.HoldsAsync(async () => (await StatusesAsync()).All(st => st.SpooledSnapshots == 0), TimeSpan.FromSeconds(120),
            "every spooled snapshot replayed");
        foreach (var id in ids)
        {
            var times = (await HistoryTimesAsync(repo, id)).Select(t => t.ToUniversalTime()).ToList();
            var afterReconnect = times.Count(t => t > remoteBackAt && t < repositoryBackAt);
            var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds).ToList();
            output.WriteLine($"server {id}: {afterReconnect} snapshots between its remote's return and the repository's, shortest gap {gaps.Min():F1} s");
            Assert.True(afterReconnect >= 2, $"server {id}: {afterReconnect} snapshots stored from after its remote came back during the outage");
            Assert.True(gaps.Min() > Frequency / 2.0, $"server {id}: two snapshots {gaps.Min():F1} s apart");
        }
    }

    [Fact]
    public async Task A_node_killed_during_an_outage_and_started_again_during_it_collects_into_its_spool_and_replays_after()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 3; i++) ids.Add(await repo.RegisterAsync(fx.Remote, 11 + i, $"kill-{i}", frequency: Frequency));
        var spool = Directory.CreateTempSubdirectory("powa-cluster-test-spool-").FullName;
        var neverSaw = Directory.CreateTempSubdirectory("powa-cluster-test-spool-").FullName;
        var dsn = repo.ConnectionString.ConnectionString;
        var env = new Dictionary<string, string> { ["PowaCluster__SpoolDirectory"] = spool };
        int Spooled() => Directory.GetFiles(spool, "*.snap", SearchOption.AllDirectories).Length;
        try
        {
            using (var node = StartupErrorTests.Start(env, ["run", "--repository", dsn]))
            {
                _ = node.StandardOutput.ReadToEndAsync();
                _ = node.StandardError.ReadToEndAsync();
                await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(60), "a first snapshot of every server");
                // What the node needs to start without the repository is on its disk: rows and plans.
                await Eventually.HoldsAsync(() => Task.FromResult(NodeState.Load(spool, Dsn.Describe(repo.ConnectionString), out _) is { } saved
                    && ids.All(id => saved.Servers.TryGetValue(id, out var s) && s.Row is not null && s.Plan is not null)),
                    TimeSpan.FromSeconds(30), "the node's state saved with every server's row and plan");
                await fx.Repository.StopAsync();
                var stoppedAt = DateTime.UtcNow;
                // Four snapshots of each server on the disk, then SIGKILL, mid-outage.
                await Eventually.HoldsAsync(() => Task.FromResult(Spooled() >= 3 * 4), TimeSpan.FromSeconds(60), "four snapshots of each server spooled");
                node.Kill();
                await node.WaitForExitAsync();
                var killedAt = DateTime.UtcNow;
                var atKill = Spooled();
                output.WriteLine($"killed {(killedAt - stoppedAt).TotalSeconds:F1} s into the outage with {atKill} spooled snapshots on disk");

                // A node that never reached this repository cannot know its servers: it says so and exits.
                var (code, _, stderr) = await StartupErrorTests.RunAsync(new Dictionary<string, string> { ["PowaCluster__SpoolDirectory"] = neverSaw },
                    "run", "--repository", dsn);
                output.WriteLine($"start of a node that never saw the repository, during the outage: exit {code}: {stderr.Trim()}");
                Assert.NotEqual(0, code);
                Assert.Contains("cannot connect to the repository", stderr);

                // Started again while the repository is still down: it collects with what it saved, into its spool.
                using var again = StartupErrorTests.Start(env, ["run", "--repository", dsn]);
                var againErr = again.StandardError.ReadToEndAsync();
                _ = again.StandardOutput.ReadToEndAsync();
                try
                {
                    await Eventually.HoldsAsync(() => Task.FromResult(Spooled() >= atKill + 3 * 3), TimeSpan.FromSeconds(60),
                        "three more snapshots of each server spooled by the node started during the outage");
                    Assert.False(again.HasExited, "the node started during the outage exited");
                    var restartedAt = DateTime.UtcNow;
                    await fx.Repository.StartAgainAsync();
                    var backAt = DateTime.UtcNow;
                    await Eventually.HoldsAsync(() => Task.FromResult(Spooled() == 0), TimeSpan.FromSeconds(90), "the spool replayed");
                    foreach (var id in ids)
                    {
                        var times = (await HistoryTimesAsync(repo, id)).Select(t => t.ToUniversalTime()).Where(t => t < backAt).ToList();
                        var beforeKill = times.Where(t => t < killedAt).ToList();
                        var afterStart = times.Where(t => t > killedAt).ToList();
                        var duringOutage = times.Count(t => t > stoppedAt);
                        var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds).ToList();
                        double Longest(List<DateTime> ts) => ts.Zip(ts.Skip(1), (a, b) => (b - a).TotalSeconds).DefaultIfEmpty(0).Max();
                        output.WriteLine($"server {id}: {duringOutage} snapshots of the outage stored, {afterStart.Count} of them taken by the node " +
                                         $"started during it; longest gap before the kill {Longest(beforeKill):F1} s, after the start {Longest(afterStart):F1} s, " +
                                         $"shortest {gaps.Min():F1} s");
                        Assert.True(afterStart.Count(t => t < restartedAt) >= 3, $"server {id}: {afterStart.Count} snapshots taken after the restart");
                        Assert.True(Longest(beforeKill) < Frequency * 1.5, $"server {id}: a hole of {Longest(beforeKill):F1} s before the kill");
                        Assert.True(Longest(afterStart) < Frequency * 1.5, $"server {id}: a hole of {Longest(afterStart):F1} s after the restart");
                        Assert.True(gaps.Min() > Frequency / 2.0, $"server {id}: two snapshots {gaps.Min():F1} s apart");
                    }
                }
                finally
                {
                    await ProcessStop.TerminateAsync(again, TimeSpan.FromSeconds(60));
                    output.WriteLine((await againErr).Trim());
                }
            }
        }
        finally
        {
            if (!fx.Repository.IsRunning) await fx.Repository.StartAgainAsync();
            Directory.Delete(spool, recursive: true);
            Directory.Delete(neverSaw, recursive: true);
        }
    }

    [Fact]
    public async Task Shards_moved_during_an_outage_keep_every_interval_in_order_whichever_node_spooled_it()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 6; i++) ids.Add(await repo.RegisterAsync(fx.Remote, 31 + i, $"moved-{i}", frequency: Frequency));
        var logs = Directory.CreateTempSubdirectory("powa-cluster-moved-").FullName;
        var settings = new Dictionary<string, string> { ["StableAfter"] = "00:00:05", ["HeartbeatPause"] = "00:00:03", ["RetryMinDelay"] = "00:00:01" };
        var passed = false;
        try
        {
            await using var nodes = ClusterNodes.Start(repo.ConnectionString, 2, poolSize: 2, debug: false, settings, logs);
            await nodes.WaitReadyAsync(TimeSpan.FromSeconds(90));
            await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(60), "a first snapshot of every server");
            var spools = nodes.Nodes.Select(n => nodes.SpoolDirectory(n)!).ToList();
            int Spooled() => spools.Sum(d => Directory.GetFiles(d, "*.snap", SearchOption.AllDirectories).Length);
            // Each node knows every server's row and plan (the other node's plans are shared with it).
            await Eventually.HoldsAsync(() => Task.FromResult(spools.All(d => NodeState.Load(d, Dsn.Describe(repo.ConnectionString), out _) is { } saved
                && ids.All(id => saved.Servers.TryGetValue(id, out var s) && s.Row is not null && s.Plan is not null))),
                TimeSpan.FromSeconds(60), "both nodes' states saved with every server's row and plan");

            await fx.Repository.StopAsync();
            var stoppedAt = DateTime.UtcNow;
            await Eventually.HoldsAsync(() => Task.FromResult(Spooled() >= ids.Count * 2), TimeSpan.FromSeconds(60), "two snapshots of each server spooled");
            // A rollout's step during the outage: node 2 stops (its servers move to node 1, its backlog stays on its
            // disk), starts again from its saved state, and takes servers back by rebalancing.
            var second = nodes.Nodes[1];
            Assert.Equal(0, await nodes.TerminateAsync(second, TimeSpan.FromSeconds(60)));
            var again = nodes.Restart(second, null, Path.Combine(logs, "node2-again.log"));
            var atRestart = Spooled();
            await Eventually.HoldsAsync(() => Task.FromResult(Spooled() >= atRestart + ids.Count * 4), TimeSpan.FromSeconds(90),
                "four more snapshots of each server spooled after node 2's restart");
            Assert.Null(again.ExitCode);
            await fx.Repository.StartAgainAsync();
            var backAt = DateTime.UtcNow;
            await Eventually.HoldsAsync(() => Task.FromResult(Spooled() == 0), TimeSpan.FromSeconds(120), "both spools replayed");
            var outage = (backAt - stoppedAt).TotalSeconds;
            foreach (var id in ids)
            {
                var times = (await HistoryTimesAsync(repo, id)).Select(t => t.ToUniversalTime()).Where(t => t < backAt).ToList();
                var during = times.Count(t => t > stoppedAt);
                var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds).ToList();
                output.WriteLine($"server {id}: {during} snapshots of the {outage:F0} s outage (expected {outage / Frequency:F1}), " +
                                 $"gaps {gaps.DefaultIfEmpty(0).Min():F1} to {gaps.DefaultIfEmpty(0).Max():F1} s");
                Assert.True(gaps.Count > 1, $"server {id}: {times.Count} snapshots in its history");
                Assert.True(gaps.Max() < Frequency * 1.5, $"server {id}: a hole of {gaps.Max():F1} s in its history");
                Assert.True(gaps.Min() > Frequency / 2.0, $"server {id}: two snapshots {gaps.Min():F1} s apart");
                Assert.InRange(during, Math.Floor(outage / Frequency) - 1, Math.Ceiling(outage / Frequency) + 1);
            }
            passed = true;
        }
        finally
        {
            if (!fx.Repository.IsRunning) await fx.Repository.StartAgainAsync();
            if (!passed)
                foreach (var f in Directory.GetFiles(logs))
                    output.WriteLine($"--- {f} (end)\n{string.Join('\n', File.ReadLines(f).Where(l => !l.Contains("[DEBUG]")).TakeLast(60))}");
            Directory.Delete(logs, recursive: true);
        }
    }

    [Fact]
    public async Task A_node_that_stops_before_a_slow_repository_stored_its_queue_spools_it_and_stores_it_in_order_when_it_starts_again()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 3; i++) ids.Add(await repo.RegisterAsync(fx.Remote, 21 + i, $"slow-{i}", frequency: Frequency));
        var spool = Directory.CreateTempSubdirectory("powa-cluster-test-spool-").FullName;
        int Spooled() => Directory.GetFiles(spool, "*.snap", SearchOption.AllDirectories).Length;
        var s = CollectorNode.FastSettings();
        s.SpoolDirectory = spool;
        s.WriterPoolSize = 1;
        s.HandOffTimeout = TimeSpan.FromSeconds(2);
        s.ResyncInterval = TimeSpan.FromSeconds(60); // the writer's queue holds snapshots only
        try
        {
            DateTime stoppingAt;
            await using (var node = await CollectorNode.StartAsync(repo, s))
            {
                await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");
                // A slow repository, not a down one: each store takes 4 s more, so one writer falls behind three
                // servers at 5 s and the snapshots queue.
                await repo.ExecAsync(SlowStores);
                var pool = ActorRegistry.For(node.System).Get<SnapshotWriterPool>();
                await Eventually.HoldsAsync(async () => (await pool.Ask<WriterPoolStats>(GetWriterPoolStats.Instance, TimeSpan.FromSeconds(3))).Queued >= 2,
                    TimeSpan.FromSeconds(60), "two snapshots waiting for the writer");
                stoppingAt = DateTime.UtcNow;
            } // stopped: the writer stores for HandOffTimeout (2 s), then what is left goes to the spool
            var atStop = Spooled();
            output.WriteLine($"stopped in {(DateTime.UtcNow - stoppingAt).TotalSeconds:F1} s with {atStop} snapshots spooled");
            Assert.True(atStop >= 1, $"{atStop} snapshots spooled at the stop");

            await repo.ExecAsync("DROP TRIGGER powa_test_slow ON powa_stat_bgwriter_history_current");
            await using (var again = await CollectorNode.StartAsync(repo, s))
                await Eventually.HoldsAsync(() => Task.FromResult(Spooled() == 0), TimeSpan.FromSeconds(60), "the spool replayed by the node started again");
            foreach (var id in ids)
            {
                var times = (await HistoryTimesAsync(repo, id)).Select(t => t.ToUniversalTime()).Where(t => t < stoppingAt).ToList();
                var gaps = times.Zip(times.Skip(1), (a, b) => (b - a).TotalSeconds).ToList();
                var beforeStop = (stoppingAt - times[^1]).TotalSeconds;
                output.WriteLine($"server {id}: {times.Count} snapshots before the stop, longest gap {gaps.Max():F1} s, shortest {gaps.Min():F1} s, " +
                                 $"the last {beforeStop:F1} s before the stop");
                Assert.True(gaps.Max() < Frequency * 1.5, $"server {id}: a hole of {gaps.Max():F1} s");
                Assert.True(gaps.Min() > Frequency / 2.0, $"server {id}: two snapshots {gaps.Min():F1} s apart");
                Assert.True(beforeStop < Frequency * 1.5, $"server {id}: its last {beforeStop:F1} s before the stop: the ones read after it were lost");
            }
        }
        finally { Directory.Delete(spool, recursive: true); }
    }

    /// <summary>Every snapshot's store waits 4 s more (a statement trigger on the table powa_take_snapshot fills once per snapshot).</summary>
    const string SlowStores =
        "CREATE FUNCTION powa_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(4); RETURN NULL; END$$; " +
        "CREATE TRIGGER powa_test_slow AFTER INSERT ON powa_stat_bgwriter_history_current FOR EACH STATEMENT EXECUTE FUNCTION powa_test_slow()";

    [Fact]
    public async Task Beyond_its_bound_the_spool_drops_the_oldest_counts_them_and_collection_goes_on()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 3; i++) ids.Add(await repo.RegisterAsync(fx.Remote, 15 + i, $"bound-{i}", frequency: Frequency));
        var s = CollectorNode.FastSettings();
        s.SpoolMaxBytes = 400_000; // a few of this lab's snapshots (some 120 kB each in the spool, deflated)
        await using var node = await CollectorNode.StartAsync(repo, s);
        var warnings = LogCapture.Start(node.System, typeof(Akka.Event.Warning));
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");
        await fx.Repository.StopAsync();
        var stoppedAt = DateTime.UtcNow;
        try
        {
            await Eventually.HoldsAsync(() => Task.FromResult(node.Runtime.Spool.Stats().Dropped > 0 && warnings.Any(w => w.Contains("beyond its bounds"))),
                TimeSpan.FromSeconds(60), "the spool beyond its bound, and said");
            var stats = node.Runtime.Spool.Stats();
            output.WriteLine($"after {(DateTime.UtcNow - stoppedAt).TotalSeconds:F0} s: {stats.Spooled} spooled, {stats.Dropped} dropped, {stats.Snapshots} kept ({stats.Bytes} bytes of {s.SpoolMaxBytes})");
            Assert.True(stats.Dropped > 0, "nothing dropped");
            Assert.True(stats.Bytes <= s.SpoolMaxBytes + stats.Bytes / Math.Max(1, stats.Snapshots) * 2, $"{stats.Bytes} bytes kept");
            var dropLines = warnings.Where(w => w.Contains("beyond its bounds")).ToList();
            foreach (var l in dropLines) output.WriteLine(l);
            Assert.InRange(dropLines.Count, 1, ids.Count); // once per server at most
        }
        finally { await fx.Repository.StartAgainAsync(); }
        var startedAt = DateTime.UtcNow;
        // What was kept is replayed, then collection goes on live.
        await Eventually.HoldsAsync(async () => node.Runtime.Spool.Stats().Snapshots == 0 && await repo.AllSnapshottedAsync(ids, startedAt.AddSeconds(Frequency)),
            TimeSpan.FromSeconds(60), "the spool replayed and a live snapshot of every server");
        var stored = (await Task.WhenAll(ids.Select(id => HistoryTimesAsync(repo, id))))
            .SelectMany(t => t.Select(x => x.ToUniversalTime()).Where(x => x > stoppedAt && x < startedAt)).Order().ToList();
        output.WriteLine($"outage snapshots stored: {stored.Count}, taken {string.Join(", ", stored.Select(t => $"{(startedAt - t).TotalSeconds:F0} s"))} before the restart");
        // The node's newest were kept, the oldest dropped: what was stored of the outage is its end.
        Assert.True(stored.Count >= 1, $"{stored.Count} snapshots of the outage stored");
        Assert.All(stored, t => Assert.True(startedAt - t < TimeSpan.FromSeconds(Frequency * 4), $"a snapshot taken {(startedAt - t).TotalSeconds:F0} s before the restart was kept"));
    }

    [TmpfsFact]
    public async Task A_full_disk_is_a_clear_error_and_live_collection_resumes_after_the_outage()
    {
        using var disk = Tmpfs.Mount(256 * 1024);
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 2; i++) ids.Add(await repo.RegisterAsync(fx.Remote, 19 + i, $"full-{i}", frequency: Frequency));
        var s = CollectorNode.FastSettings();
        s.SpoolDirectory = disk.Path;
        await using var node = await CollectorNode.StartAsync(repo, s);
        var errors = LogCapture.Start(node.System, typeof(Akka.Event.Error));
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids), TimeSpan.FromSeconds(30), "a first snapshot of every server");
        disk.Fill();
        await fx.Repository.StopAsync();
        try
        {
            await Eventually.HoldsAsync(() => Task.FromResult(errors.Any(e => e.Contains("No space left on device"))), TimeSpan.FromSeconds(60),
                "the full disk said");
        }
        finally { await fx.Repository.StartAgainAsync(); }
        var startedAt = DateTime.UtcNow;
        var full = errors.Where(e => e.Contains("No space left on device")).ToList();
        foreach (var e in full) output.WriteLine(e);
        Assert.InRange(full.Count, 1, ids.Count); // said, once per server at most
        Assert.Contains(disk.Path, full[0]);
        Assert.True(node.Runtime.Spool.Stats().WriteFailures > 0);
        await Eventually.HoldsAsync(() => repo.AllSnapshottedAsync(ids, startedAt.AddSeconds(1)), TimeSpan.FromSeconds(30),
            "a live snapshot of every server after the outage");
    }

    /// <summary>Every ts of a server's powa_stat_bgwriter history, aggregated or not.</summary>
    static Task<List<DateTime>> HistoryTimesAsync(TestRepository repo, int srvid) => repo.ListAsync<DateTime>(
        "SELECT ts FROM (SELECT (record).ts FROM powa_stat_bgwriter_history_current WHERE srvid = $1 " +
        "UNION SELECT (unnest(records)).ts FROM powa_stat_bgwriter_history WHERE srvid = $1) t ORDER BY 1", srvid);

    /// <summary>The shape of powa-web's BASE_QUERY_SAMPLE_DB (powa/sql/views_graph.py): the per-database statements history in a range.</summary>
    const string PowaWebSampleByDb =
        "SELECT base.ts FROM powa_databases d, LATERAL (" +
        "  SELECT dbid, (unnested.records).ts FROM (SELECT psh.dbid, unnest(records) AS records FROM powa_statements_history_db psh " +
        "    WHERE coalesce_range && tstzrange($2, $3, '[]') AND psh.dbid = d.oid AND psh.srvid = d.srvid AND psh.srvid = $1) unnested " +
        "  WHERE (records).ts <@ tstzrange($2, $3, '[]') " +
        "  UNION ALL SELECT dbid, (record).ts FROM powa_statements_history_current_db " +
        "  WHERE (record).ts <@ tstzrange($2, $3, '[]') AND dbid = d.oid AND srvid = d.srvid AND srvid = $1) base " +
        "WHERE d.srvid = $1";
}
