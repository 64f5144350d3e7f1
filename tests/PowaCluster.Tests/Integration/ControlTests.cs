using System.Diagnostics;
using PowaCluster.Collector.Actors;
using PowaCluster.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace PowaCluster.Tests.Integration;

/// <summary>powa-web's NOTIFY protocol against a running one-node collector, on a real repository.</summary>
[Collection(LabCollection.Name)]
public sealed class ControlTests(LabFixture fx, ITestOutputHelper output)
{
    /// <summary>Changes take effect through RELOAD only: the periodic resync is far away.</summary>
    static Collector.Configuration.CollectorSettings ReloadOnly()
    {
        var s = CollectorNode.FastSettings();
        s.ResyncInterval = TimeSpan.FromMinutes(10);
        return s;
    }

    /// <summary>
    /// A collector node on a new repository, powa-web's client connected to it, a login role that may not drive
    /// the collector (Stranger), and a session of that role listening on the channel its requests name.
    /// </summary>
    sealed class StrangerScene : IAsyncDisposable
    {
        public required TestRepository Repo { get; init; }
        public required CollectorNode Node { get; init; }
        public required PowaWebClient Web { get; init; }
        public required Npgsql.NpgsqlConnectionStringBuilder Stranger { get; init; }
        public required PowaWebClient Eavesdropper { get; init; }

        public static async Task<StrangerScene> StartAsync(LabFixture fx, string prefix, string channel)
        {
            var repo = await fx.NewRepositoryAsync();
            var role = $"{prefix}_{Guid.NewGuid():N}"[..20];
            await repo.ExecAsync($"CREATE ROLE {role} LOGIN PASSWORD 'x{role}'");
            var node = await CollectorNode.StartAsync(repo, ReloadOnly());
            var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
            await web.WaitForCollectorAsync();
            var stranger = new Npgsql.NpgsqlConnectionStringBuilder(repo.ConnectionString.ConnectionString) { Username = role, Password = "x" + role };
            var eavesdropper = await PowaWebClient.ConnectAsync(stranger);
            await eavesdropper.ListenAsync(channel);
            return new StrangerScene { Repo = repo, Node = node, Web = web, Stranger = stranger, Eavesdropper = eavesdropper };
        }

        public async ValueTask DisposeAsync()
        {
            await Eavesdropper.DisposeAsync();
            await Web.DisposeAsync();
            await Node.DisposeAsync();
        }
    }

    static async Task<string?> WaitForReplyAsync(PowaWebClient client, string command, string channel, string args, Func<string?, bool> done, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        string? last;
        do
        {
            last = await client.AskAsync(command, channel, args);
            if (done(last)) return last;
            await Task.Delay(300);
        } while (DateTime.UtcNow < deadline);
        return last;
    }

    [Fact]
    public async Task Replies_byte_for_byte_as_the_reference()
    {
        var repo = await fx.NewRepositoryAsync();
        var remote = fx.Lab.Remotes[0];
        var good = await repo.RegisterAsync(remote, 21, "ctl-good", frequency: 300);
        var bad = await repo.RegisterAsync(remote, 22, "ctl-bad", port: 1);
        // A fixed schedule: last snapshot 250 s ago at 300 s, so the next one is 50 s away.
        await repo.ExecAsync("UPDATE powa_snapshot_metas SET snapts = now() - interval '250 s' WHERE srvid = $1", good);
        await using var node = await CollectorNode.StartAsync(repo, ReloadOnly());
        await using var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
        await web.WaitForCollectorAsync();

        var expected = $"WORKERS_STATUS OK {{\"{good}\": \"running\", \"{bad}\": \"no connection to remote server\"}}";
        Assert.Equal(expected, await WaitForReplyAsync(web, "WORKERS_STATUS", "r1", "", r => r == expected, TimeSpan.FromSeconds(15)));
        Assert.Equal($"WORKERS_STATUS OK {{\"{good}\": \"running\"}}", await web.AskAsync("WORKERS_STATUS", "r2", good.ToString()));
        Assert.Equal("WORKERS_STATUS OK {}", await web.AskAsync("WORKERS_STATUS", "r3", "999"));
        Assert.Equal("RELOAD OK OK", await web.AskAsync("RELOAD", "r4"));
        Assert.Equal("BOGUS UNKNOWN ", await web.AskAsync("BOGUS", "r5"));

        Assert.Empty(await repo.SnapshotTimesAsync(good));
        var before = 0;
        // powa-collector 1.3.1's words, which powa-web 5 shows.
        Assert.Equal("FORCE_SNAPSHOT OK Snapshot in progress", await web.AskAsync("FORCE_SNAPSHOT", "r6", good.ToString()));
        var again = await web.AskAsync("FORCE_SNAPSHOT", "r7", good.ToString());
        Assert.True(again is "FORCE_SNAPSHOT ERROR A snapshot is already in progress" or
                    "FORCE_SNAPSHOT ERROR Last snapshot was less than 10s. ago", again);
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(good)).Count > before, TimeSpan.FromSeconds(5), "the forced snapshot");
        Assert.Equal("FORCE_SNAPSHOT ERROR Server id 999 not found", await web.AskAsync("FORCE_SNAPSHOT", "r8", "999"));
        Assert.Equal("FORCE_SNAPSHOT ERROR invalid remote server id abc", await web.AskAsync("FORCE_SNAPSHOT", "r9", "abc"));
        Assert.Equal("FORCE_SNAPSHOT ERROR Command \"['1', '2']\" malformed", await web.AskAsync("FORCE_SNAPSHOT", "r9b", "1 2"));
        Assert.StartsWith($"FORCE_SNAPSHOT ERROR server {bad}: no connection to remote server", await web.AskAsync("FORCE_SNAPSHOT", "r10", bad.ToString()));

        // A channel of "-": done, not answered.
        await web.ListenAsync("r11");
        await web.NotifyAsync("WORKERS_STATUS - ");
        Assert.Null(await web.NextAsync(TimeSpan.FromSeconds(1.5)));
    }

    [Fact]
    public async Task Hostile_requests_get_their_answer_and_execute_nothing()
    {
        var repo = await fx.NewRepositoryAsync();
        var srvid = await repo.RegisterAsync(fx.Lab.Remotes[1], 21, "ctl-hostile");
        await using var node = await CollectorNode.StartAsync(repo, ReloadOnly());
        await using var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
        await web.WaitForCollectorAsync();

        // Quotes, a semicolon, unicode in the channel; no spaces (they separate the words).
        const string channel = "r'\";DROP_TABLE_powa_servers;--é✓";
        Assert.Equal("BOGUS UNKNOWN ", await web.AskAsync("BOGUS", channel));
        Assert.Equal("RELOAD'; UNKNOWN ", await web.AskAsync("RELOAD';", channel));
        // As the reference: an argument that is not a number means every server.
        Assert.StartsWith($"WORKERS_STATUS OK {{\"{srvid}\": \"", await web.AskAsync("WORKERS_STATUS", channel, "0;SELECT"));
        Assert.Equal("FORCE_SNAPSHOT ERROR invalid remote server id 1);DROP", await web.AskAsync("FORCE_SNAPSHOT", channel, "1);DROP"));
        var huge = new string('A', 7900);
        Assert.Equal($"{huge} UNKNOWN ", await web.AskAsync(huge, "big"));
        // A request that fits (7995 bytes) whose command is too long to be answered at all, even with
        // KO ANSWER TOO LONG: no answer, and the collector goes on.
        await web.ListenAsync("c");
        await web.NotifyAsync(new string('B', 7992) + " c ");
        Assert.Null(await web.NextAsync(TimeSpan.FromSeconds(1.5)));
        Assert.Equal($"WORKERS_STATUS OK {{\"{srvid}\": \"running\"}}",
            await WaitForReplyAsync(web, "WORKERS_STATUS", "after", "", r => r?.Contains("running") == true, TimeSpan.FromSeconds(10)));
        Assert.Equal(1, await repo.ScalarAsync<long>("SELECT count(*) FROM powa_servers WHERE id = $1", srvid));
    }

    [Fact]
    public async Task Senders_without_permission_are_refused()
    {
        var repo = await fx.NewRepositoryAsync();
        var role = $"nobody_{Guid.NewGuid():N}"[..20];
        var signaller = $"signal_{Guid.NewGuid():N}"[..20];
        await repo.ExecAsync($"CREATE ROLE {role} LOGIN PASSWORD 'x{role}'");
        await repo.ExecAsync($"CREATE ROLE {signaller} LOGIN PASSWORD 'x{signaller}' IN ROLE pg_signal_backend");
        await using var node = await CollectorNode.StartAsync(repo, ReloadOnly());

        var csb = repo.ConnectionString;
        await using var nobody = await PowaWebClient.ConnectAsync(new(csb.ConnectionString) { Username = role, Password = "x" + role });
        await using var allowed = await PowaWebClient.ConnectAsync(new(csb.ConnectionString) { Username = signaller, Password = "x" + signaller });
        await allowed.WaitForCollectorAsync();
        Assert.Equal("RELOAD OK OK", await allowed.AskAsync("RELOAD", "ok1"));
        Assert.Equal("RELOAD ERROR Permission denied", await nobody.AskAsync("RELOAD", "no1"));
        // A refused role is answered once: its next requests, from this backend or another, get nothing.
        await using var nobody2 = await PowaWebClient.ConnectAsync(new(csb.ConnectionString) { Username = role, Password = "x" + role });
        Assert.Null(await nobody.AskAsync("WORKERS_STATUS", "no2", "", TimeSpan.FromSeconds(2)));
        Assert.Null(await nobody2.AskAsync("FORCE_SNAPSHOT", "no3", "1", TimeSpan.FromSeconds(2)));
        Assert.Equal("WORKERS_STATUS OK {}", await allowed.AskAsync("WORKERS_STATUS", "ok2"));
    }

    /// <summary>
    /// A login with 20 sessions sends 100 requests from each, all asking for a reply on its channel: the role
    /// fills what one role may of NotifyGate, not the whole gate, and is answered once; powa-web's request in the
    /// middle of it is answered.
    /// </summary>
    [Fact]
    public async Task Twenty_sessions_of_one_login_get_one_answer_and_leave_powa_web_its_room()
    {
        await using var scene = await StrangerScene.StartAsync(fx, "many", "many_replies");
        var (repo, web, strangerCsb, eavesdropper) = (scene.Repo, scene.Web, scene.Stranger, scene.Eavesdropper);

        var sessions = new List<Npgsql.NpgsqlConnection>();
        try
        {
            for (var i = 0; i < 20; i++)
            {
                var c = new Npgsql.NpgsqlConnection(strangerCsb.ConnectionString);
                await c.OpenAsync();
                sessions.Add(c);
            }
            // Each session stays connected, so its backend can be checked and is known for the next ones.
            for (var round = 0; round < 4; round++)
                await Task.WhenAll(sessions.Select(async c =>
                {
                    await using var cmd = new Npgsql.NpgsqlCommand(
                        "SELECT pg_notify('powa_collector', 'WORKERS_STATUS many_replies') FROM generate_series(1, 25)", c);
                    await cmd.ExecuteNonQueryAsync();
                }));
            var sw = Stopwatch.StartNew();
            var reply = await web.AskAsync("WORKERS_STATUS", "web_in_the_middle", "", TimeSpan.FromSeconds(10));
            output.WriteLine($"powa-web's WORKERS_STATUS: {reply} in {sw.ElapsedMilliseconds} ms");
            Assert.Equal("WORKERS_STATUS OK {}", reply);
        }
        finally
        {
            foreach (var c in sessions) await c.DisposeAsync();
        }

        var replies = new List<string>();
        while (await eavesdropper.NextAsync(TimeSpan.FromSeconds(2)) is { } r) replies.Add(r.Payload);
        output.WriteLine($"replies on the stranger's channel: {replies.Count}");
        Assert.Equal(["WORKERS_STATUS ERROR Permission denied"], replies);
    }

    /// <summary>
    /// pgbench -C -c 50 as a stranger: a new backend per request, each gone before it could be checked, all asking
    /// WORKERS_STATUS; powa-web's requests meanwhile are answered, each within a second (measured, printed; the
    /// test's bound is the reference's 3 s wait, beyond which powa-web gives up).
    /// </summary>
    [Fact]
    public async Task A_connection_storm_of_requests_leaves_powa_web_answered()
    {
        await using var scene = await StrangerScene.StartAsync(fx, "storm", "storm_replies");
        var (repo, web, strangerCsb, eavesdropper) = (scene.Repo, scene.Web, scene.Stranger, scene.Eavesdropper);
        var role = strangerCsb.Username!;

        var script = Path.Combine(Path.GetTempPath(), $"storm-{Guid.NewGuid():N}.sql");
        await File.WriteAllTextAsync(script, "SELECT pg_notify('powa_collector', 'WORKERS_STATUS storm_replies');\n");
        using var stop = new CancellationTokenSource();
        var psi = new ProcessStartInfo(Path.Combine(PowaCluster.Lab.Embedded.LocalPostgres.BinDir, "pgbench"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment = { ["PGPASSWORD"] = strangerCsb.Password! },
        };
        foreach (var a in new[] { "-n", "-C", "-c", "50", "-j", "2", "-t", "6", "-f", script,
                     "-h", strangerCsb.Host!, "-p", strangerCsb.Port.ToString(), "-U", role, strangerCsb.Database! })
            psi.ArgumentList.Add(a);
        using var pgbench = Process.Start(psi)!;
        var pgbenchOut = pgbench.StandardOutput.ReadToEndAsync();
        var pgbenchErr = pgbench.StandardError.ReadToEndAsync();
        var times = new List<long>();
        try
        {
            // The storm is on once the repository sees it.
            await Eventually.HoldsAsync(async () => await repo.ScalarAsync<long>(
                $"SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'") >= 10, TimeSpan.FromSeconds(30), "pgbench's connections");
            // powa-web asks, one request after the other, as long as the storm lasts (300 connections, 50 at a time).
            for (var i = 0; i < 10 || !pgbench.HasExited; i++)
            {
                var sw = Stopwatch.StartNew();
                var reply = await web.AskAsync("WORKERS_STATUS", $"web_storm_{i}", "", TimeSpan.FromSeconds(10));
                times.Add(sw.ElapsedMilliseconds);
                Assert.Equal("WORKERS_STATUS OK {}", reply);
            }
        }
        finally
        {
            if (!pgbench.HasExited) pgbench.Kill();
            await pgbench.WaitForExitAsync();
            File.Delete(script);
        }
        output.WriteLine(string.Join("\n", (await pgbenchOut).Split('\n').Where(l => l.Contains("processed") || l.StartsWith("tps") || l.Contains("failed"))));
        times.Sort();
        output.WriteLine($"powa-web's WORKERS_STATUS during the storm: {times.Count} requests, median {times[times.Count / 2]} ms, longest {times[^1]} ms");
        Assert.True(pgbench.ExitCode == 0, $"pgbench: {(await pgbenchErr).Trim()}");
        var replies = new List<string>();
        while (await eavesdropper.NextAsync(TimeSpan.FromSeconds(2)) is { } r) replies.Add(r.Payload);
        output.WriteLine($"replies on the storm's channel: {replies.Count}");
        Assert.True(replies.Count <= 1, $"{replies.Count} replies to the storm's role");
        Assert.All(times, t => Assert.True(t < 3000, $"answered after {t} ms"));
    }

    /// <summary>
    /// 100,000 notifications from a role that may not drive the collector: bounded (dropped and counted beyond
    /// NotifyGate's bounds), one permission query per backend, a few refusals answered and logged, and powa-web's
    /// WORKERS_STATUS answered at once after it; collection goes on. (The fault script prints the figures.)
    /// </summary>
    [Fact]
    public async Task A_NOTIFY_flood_from_a_stranger_costs_neither_the_control_plane_nor_snapshots()
    {
        var repo = await fx.NewRepositoryAsync();
        var srvid = await repo.RegisterAsync(fx.Lab.Remotes[0], 24, "ctl-flood", frequency: 5);
        var role = $"flood_{Guid.NewGuid():N}"[..20];
        await repo.ExecAsync($"CREATE ROLE {role} LOGIN PASSWORD 'x{role}'");
        await using var node = await CollectorNode.StartAsync(repo, ReloadOnly());
        var warnings = LogCapture.Start(node.System, typeof(Akka.Event.Warning));
        await using var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
        await web.WaitForCollectorAsync();
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= 1, TimeSpan.FromSeconds(20), "a first snapshot");

        await using (var stranger = new Npgsql.NpgsqlConnection(new Npgsql.NpgsqlConnectionStringBuilder(repo.ConnectionString.ConnectionString)
        { Username = role, Password = "x" + role }.ConnectionString))
        {
            await stranger.OpenAsync();
            await using var cmd = new Npgsql.NpgsqlCommand(
                "SELECT pg_notify('powa_collector', 'WORKERS_STATUS flood_' || i || ' ') FROM generate_series(1, 100000) i", stranger);
            await cmd.ExecuteNonQueryAsync();
        }
        var sw = Stopwatch.StartNew();
        var reply = await web.AskAsync("WORKERS_STATUS", "after_flood", "", TimeSpan.FromSeconds(10));
        output.WriteLine($"WORKERS_STATUS after 100,000 hostile notifications: {reply} in {sw.ElapsedMilliseconds} ms");
        Assert.Equal($"WORKERS_STATUS OK {{\"{srvid}\": \"running\"}}", reply);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"answered after {sw.ElapsedMilliseconds} ms");

        // Snapshots went on through the flood, every 5 s.
        var before = (await repo.SnapshotTimesAsync(srvid)).Count;
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(srvid)).Count >= before + 2, TimeSpan.FromSeconds(12), "snapshots after the flood");
        // A handful of lines, not one per notification.
        await Task.Delay(500);
        var lines = warnings.Where(w => w.Contains("Refused") || w.Contains("flood")).ToList();
        foreach (var l in lines) output.WriteLine(l);
        Assert.InRange(lines.Count, 1, 5);
        Assert.Contains(lines, l => l.Contains("notifications dropped"));
    }

    [Fact]
    public async Task Register_configure_deactivate_delete_then_RELOAD_take_effect_within_2_s()
    {
        var repo = await fx.NewRepositoryAsync();
        var r1 = fx.Lab.Remotes[0];
        var r2 = fx.Lab.Remotes[1];
        var kept = await repo.RegisterAsync(r1, 23, "ctl-kept");
        await using var node = await CollectorNode.StartAsync(repo, ReloadOnly());
        await using var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
        await web.WaitForCollectorAsync();

        async Task<TimeSpan> ReloadAndWait(Func<Task<bool>> effect, string what)
        {
            var sw = Stopwatch.StartNew();
            Assert.Equal("RELOAD OK OK", await web.AskAsync("RELOAD", "rl"));
            await Eventually.HoldsAsync(effect, TimeSpan.FromSeconds(2), what);
            output.WriteLine($"{what}: {sw.ElapsedMilliseconds} ms after RELOAD was sent");
            return sw.Elapsed;
        }

        // Added.
        var added = await repo.RegisterAsync(r1, 24, "ctl-added");
        await ReloadAndWait(async () => (await web.AskAsync("WORKERS_STATUS", "s1", added.ToString()))!.Contains("\"running\""), "registered server running");

        // Changed: new port (and that instance's password).
        await repo.ExecAsync("SELECT powa_configure_server($1, json_build_object('port', $2::int, 'password', $3::text))", added, r2.Port, r2.Password);
        await ReloadAndWait(async () => await r2.ScalarAsync<long>("postgres",
            $"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'PoWA collector - worker 127.0.0.24:{r2.Port}'") == 1, "reconnected to the new port");

        // Deactivated: gone from the status, and no snapshot after that.
        await repo.ExecAsync("SELECT powa_deactivate_server($1)", added);
        await ReloadAndWait(async () => (await web.AskAsync("WORKERS_STATUS", "s2", added.ToString())) == "WORKERS_STATUS OK {}", "deactivated server stopped");
        var frozen = (await repo.SnapshotTimesAsync(added)).Count;

        // Removed with its data.
        var removed = await repo.RegisterAsync(r1, 25, "ctl-removed");
        await ReloadAndWait(async () => (await web.AskAsync("WORKERS_STATUS", "s3", removed.ToString()))!.Contains("\"running\""), "second server running");
        await repo.ExecAsync("SELECT powa_delete_and_purge_server($1)", removed);
        await ReloadAndWait(async () => (await web.AskAsync("WORKERS_STATUS", "s4", removed.ToString())) == "WORKERS_STATUS OK {}", "removed server stopped");

        // More than one interval, by the kept server's own snapshots: none more for the deactivated one.
        var keptBefore = (await repo.SnapshotTimesAsync(kept)).Count;
        await Eventually.HoldsAsync(async () => (await repo.SnapshotTimesAsync(kept)).Count >= keptBefore + 2, TimeSpan.FromSeconds(30),
            "two more snapshots of the kept server");
        Assert.Equal(frozen, (await repo.SnapshotTimesAsync(added)).Count);
        Assert.Contains("\"running\"", await web.AskAsync("WORKERS_STATUS", "s5", kept.ToString()));
    }

    [Fact]
    public async Task A_dropped_LISTEN_connection_is_replaced()
    {
        var repo = await fx.NewRepositoryAsync();
        await using var node = await CollectorNode.StartAsync(repo, ReloadOnly());
        await using var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
        await web.WaitForCollectorAsync();
        const string listener = "PoWA collector - main thread (powa-cluster ";
        Assert.Equal(1, await repo.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND starts_with(application_name, $2) AND query ILIKE 'LISTEN%'",
            repo.Database, listener));
        Assert.True(await repo.ScalarAsync<bool>(
            "SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND starts_with(application_name, $2)",
            repo.Database, listener));
        var sw = Stopwatch.StartNew();
        await web.WaitForCollectorAsync(TimeSpan.FromSeconds(20));
        output.WriteLine($"answering again {sw.ElapsedMilliseconds} ms after its LISTEN connection was terminated");
        Assert.Equal("RELOAD OK OK", await web.AskAsync("RELOAD", "after"));
    }

    [Fact]
    public async Task Workers_status_of_100_servers()
    {
        var repo = await fx.NewRepositoryAsync();
        var ids = new List<int>();
        for (var i = 0; i < 100; i++)
            ids.Add(await repo.RegisterAsync(fx.Lab.Remotes[i % 2], 1 + i / 2, $"ctl-{i}", frequency: 300));
        await using var node = await CollectorNode.StartAsync(repo, ReloadOnly());
        await using var web = await PowaWebClient.ConnectAsync(repo.ConnectionString);
        await web.WaitForCollectorAsync();
        var all = await WaitForReplyAsync(web, "WORKERS_STATUS", "w", "", r => r is not null && r.Split("\"running\"").Length == 101, TimeSpan.FromSeconds(60));
        Assert.NotNull(all);
        foreach (var id in ids) Assert.Contains($"\"{id}\": \"running\"", all);
        var times = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            Assert.StartsWith("WORKERS_STATUS OK {", await web.AskAsync("WORKERS_STATUS", $"t{i}"));
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        output.WriteLine($"WORKERS_STATUS for 100 servers, NOTIFY to reply: {string.Join(", ", times.Select(t => $"{t:F0} ms"))}");

    }
}
