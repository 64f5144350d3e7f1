using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Faults;

/// <summary>
/// powa-lab faults: a real cluster of three powa-cluster processes (mutual TLS, static seeds on loopback) on
/// throwaway PostgreSQL instances, put through faults one after the other, each measured from the repository
/// over its window (the fault and the recovery after it): whether the collector kept running, snapshots due
/// and stored, the longest and the shortest gap between two snapshots of a server (shorter than half an
/// interval: a double snapshot), collector sessions idle in transaction for more than 5 s, and how long after
/// the fault's end every server had a snapshot again.
/// </summary>
public static class FaultsCommand
{
    public static readonly string[] All =
        ["repository-stop", "repository-freeze", "remote-freeze", "notify-flood", "hostile-rows", "strangers", "isolated-seed", "node-freeze"];

    public static async Task<int> RunAsync(LabOptions cli)
    {
        var only = cli.Only ?? All;
        var frequency = TimeSpan.FromSeconds(cli.Frequency);
        Console.WriteLine($"faults: starting a throwaway repository and {cli.Remotes} remotes, {cli.Servers} servers at {cli.Frequency} s, " +
                          $"3 collector nodes; faults: {string.Join(", ", only)}{(cli.LongFreezeSeconds > 0 ? $", repository frozen {cli.LongFreezeSeconds} s" : "")}");
        var perRemote = (cli.Servers + cli.Remotes - 1) / cli.Remotes;
        PowaLab lab;
        try { lab = await PowaLab.StartAsync(cli.Remotes, Math.Max(8, perRemote + 4)); }
        catch (InvalidOperationException e) { throw new StartupException($"cannot start the throwaway PostgreSQL instances: {e.Message}"); }
        await using var _ = lab;
        var ids = await lab.RegisterManyAsync(cli.Servers, cli.Frequency, "fault");
        var repoDsn = lab.Repository.ConnectionString(PowaLab.Database);
        var measure = new FaultMeasure(repoDsn, lab.Remotes.Select(r => r.ConnectionString("postgres")).ToList());
        var logs = Directory.CreateTempSubdirectory("powa-cluster-faults-").FullName;
        await using var nodes = ClusterNodes.Start(repoDsn, 3, poolSize: 2, debug: cli.Debug, logDirectory: logs);
        try { await nodes.WaitReadyAsync(TimeSpan.FromSeconds(120)); }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException) { throw new StartupException(e.Message); }
        if (await measure.ResumedAsync(ids, DateTime.UtcNow.AddSeconds(-300), TimeSpan.FromSeconds(90)) is null)
            throw new StartupException($"not every server was snapshotted within 90 s; the nodes' logs are in {logs}");
        await SettledAsync(repoDsn, ids, nodes);
        Console.WriteLine($"faults: the cluster collects every server; the nodes' logs are in {logs}");

        using var stopSampling = new CancellationTokenSource();
        var sampler = measure.SampleAsync(stopSampling.Token);
        var rows = new List<FaultRow>();
        var ctx = new FaultContext(lab, nodes, ids, frequency, measure, repoDsn, logs);
        foreach (var fault in only)
        {
            Console.WriteLine($"faults: {fault}...");
            var row = fault switch
            {
                "repository-stop" => await RepositoryStopAsync(ctx, TimeSpan.FromSeconds(60)),
                "repository-freeze" => await RepositoryFreezeAsync(ctx, TimeSpan.FromSeconds(60)),
                "remote-freeze" => await RemoteFreezeAsync(ctx, TimeSpan.FromSeconds(90)),
                "notify-flood" => await NotifyFloodAsync(ctx),
                "hostile-rows" => await HostileRowsAsync(ctx),
                "strangers" => await StrangersAsync(ctx),
                "isolated-seed" => await IsolatedSeedAsync(ctx),
                "node-freeze" => await NodeFreezeAsync(ctx),
                _ => throw new StartupException($"unknown fault \"{fault}\" ({string.Join(", ", All)})"),
            };
            rows.Add(row);
            Console.WriteLine($"faults: {row.Line(frequency.TotalSeconds)}");
        }
        if (cli.LongFreezeSeconds > 0)
        {
            Console.WriteLine($"faults: repository frozen {cli.LongFreezeSeconds} s...");
            rows.Add(await RepositoryFreezeAsync(ctx, TimeSpan.FromSeconds(cli.LongFreezeSeconds)));
        }
        await stopSampling.CancelAsync();
        await sampler;

        Console.WriteLine();
        Console.WriteLine($"faults: {cli.Servers} servers at {cli.Frequency} s on 3 nodes (cluster TLS); a window is the fault and the " +
                          "recovery after it; a shortest gap under half an interval would be a double snapshot");
        Console.WriteLine(FaultRow.Header);
        foreach (var r in rows) Console.WriteLine(r.Line(frequency.TotalSeconds));
        return rows.All(r => r.Alive && !(r.ShortestGapSeconds < frequency.TotalSeconds / 2) && r.StuckInTransaction == 0) ? 0 : 1;
    }

    /// <summary>
    /// The first node up is given every shard and the others take theirs by rebalancing: the faults start once
    /// every node holds servers and the spread has not changed for 20 s (at most 3 minutes).
    /// </summary>
    static async Task SettledAsync(NpgsqlConnectionStringBuilder repo, IReadOnlyList<int> ids, ClusterNodes nodes)
    {
        await using var monitor = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repo.ConnectionString)
            { ApplicationName = "powa-cluster fault monitor" }.ConnectionString);
        await monitor.OpenAsync();
        string? last = null;
        var stableSince = DateTime.UtcNow;
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var statuses = await Host.Cli.ControlClient.ClusterStatusAsync(monitor, repo, ids, TimeSpan.FromSeconds(3));
                var spread = string.Join(", ", statuses.Values.GroupBy(v => v.Node).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"));
                if (spread != last) { last = spread; stableSince = DateTime.UtcNow; }
                else if (statuses.Values.Select(v => v.Node).Distinct().Count() == nodes.Nodes.Count && DateTime.UtcNow - stableSince > TimeSpan.FromSeconds(20))
                {
                    Console.WriteLine($"faults: servers per node: {spread}");
                    return;
                }
            }
            catch (StartupException) { /* the coordinator is moving */ }
            await Task.Delay(2000);
        }
        Console.WriteLine($"faults: the spread of the servers did not settle in 3 minutes (last: {last}); going on");
    }

    sealed record FaultContext(PowaLab Lab, ClusterNodes Nodes, IReadOnlyList<int> Servers, TimeSpan Frequency, FaultMeasure Measure,
        NpgsqlConnectionStringBuilder Repository, string Logs)
    {
        /// <summary>Nodes a fault stopped on purpose (an earlier fault's frozen node, downed): not counted after.</summary>
        public HashSet<ClusterNodes.Node> Gone { get; } = [];

        /// <summary>The cluster's nodes still running, but those a fault stopped on purpose.</summary>
        public bool Alive(params ClusterNodes.Node[] except) =>
            Nodes.Nodes.Where(n => !except.Contains(n) && !Gone.Contains(n)).All(n => n.ExitCode is null);
    }

    /// <summary>
    /// The window of a fault: begin, hold it, end, wait until every server has a snapshot after the end, then
    /// one more interval so that what was queued is stored; measured over [begin, that point).
    /// </summary>
    static async Task<FaultRow> WindowAsync(FaultContext c, string name, TimeSpan hold, Func<Task> begin, Func<Task> end,
        IReadOnlyList<int>? servers = null, Func<Task<string>>? note = null, Func<bool>? alive = null)
    {
        servers ??= c.Servers;
        var from = DateTime.UtcNow;
        await begin();
        await Task.Delay(hold);
        await end();
        var ended = DateTime.UtcNow;
        var resumed = await c.Measure.ResumedAsync(c.Servers, ended, c.Frequency * 3 + TimeSpan.FromSeconds(60));
        await Task.Delay(c.Frequency);
        var to = DateTime.UtcNow;
        var (due, stored, longest, shortest) = await c.Measure.WindowAsync(servers, from, to, c.Frequency);
        return new FaultRow(name, alive?.Invoke() ?? c.Alive(), due, stored, longest, shortest, c.Measure.TakeStuck(), resumed,
            note is null ? "" : await note());
    }

    static LocalPostgres Local(IPostgresInstance i) =>
        i as LocalPostgres ?? throw new StartupException("powa-lab faults needs local PostgreSQL instances (it stops and freezes them)");

    static Task<FaultRow> RepositoryStopAsync(FaultContext c, TimeSpan hold) =>
        WindowAsync(c, $"repository stopped {hold.TotalSeconds:F0} s", hold,
            () => Local(c.Lab.Repository).StopAsync(), () => Local(c.Lab.Repository).StartAgainAsync(),
            note: () => Task.FromResult("snapshots due while it is down are lost until a spool exists (issue 12)"));

    static Task<FaultRow> RepositoryFreezeAsync(FaultContext c, TimeSpan hold) =>
        WindowAsync(c, $"repository frozen (SIGSTOP) {hold.TotalSeconds:F0} s", hold,
            () => { Local(c.Lab.Repository).Freeze(); return Task.CompletedTask; },
            () => { Local(c.Lab.Repository).Thaw(); return Task.CompletedTask; },
            note: () => Task.FromResult("snapshots read during the freeze are queued (MaxQueuedSnapshots 6 per server) and stored after it; " +
                                         "beyond that they are lost until a spool exists (issue 12)"));

    /// <summary>One remote frozen: the servers of the other remotes are measured (they must keep their schedule).</summary>
    static async Task<FaultRow> RemoteFreezeAsync(FaultContext c, TimeSpan hold)
    {
        var frozen = Local(c.Lab.Remotes[^1]);
        var others = new List<int>();
        await using (var conn = await c.Measure.OpenAsync(c.Repository, c.Repository.Database!, TimeSpan.FromSeconds(10)))
        await using (var cmd = new NpgsqlCommand("SELECT id FROM powa_servers WHERE id > 0 AND port <> $1", conn) { Parameters = { new() { Value = frozen.Port } } })
        await using (var r = await cmd.ExecuteReaderAsync())
            while (await r.ReadAsync()) others.Add(r.GetInt32(0));
        return await WindowAsync(c, $"a remote frozen {hold.TotalSeconds:F0} s (the other remote's servers)", hold,
            () => { frozen.Freeze(); return Task.CompletedTask; }, () => { frozen.Thaw(); return Task.CompletedTask; }, others);
    }

    /// <summary>100,000 NOTIFYs from a role that may not drive the collector, then powa-web's WORKERS_STATUS.</summary>
    static async Task<FaultRow> NotifyFloodAsync(FaultContext c)
    {
        var role = $"flood_{Guid.NewGuid():N}"[..16];
        string? reply = null;
        var answered = TimeSpan.Zero;
        var linesBefore = LogLines(c, "Refused", "NOTIFY flood");
        return await WindowAsync(c, "100,000 NOTIFYs from a stranger", TimeSpan.FromSeconds(2), async () =>
        {
            await using var admin = await c.Measure.OpenAsync(c.Repository, c.Repository.Database!, TimeSpan.FromSeconds(10));
            await using (var create = new NpgsqlCommand($"CREATE ROLE {role} LOGIN PASSWORD 'p{role}'", admin)) await create.ExecuteNonQueryAsync();
            await using var stranger = await c.Measure.OpenAsync(new NpgsqlConnectionStringBuilder(c.Repository.ConnectionString)
                { Username = role, Password = "p" + role }, c.Repository.Database!, TimeSpan.FromSeconds(60));
            await using (var flood = new NpgsqlCommand(
                             "SELECT pg_notify('powa_collector', 'WORKERS_STATUS flood_' || i || ' ') FROM generate_series(1, 100000) i", stranger))
                await flood.ExecuteNonQueryAsync();
            // powa-web, right after: LISTEN on its channel, ask, wait.
            await using var web = await c.Measure.OpenAsync(c.Repository, c.Repository.Database!, TimeSpan.FromSeconds(10));
            web.Notification += (_, e) => { if (e.Channel == "after_flood") reply = e.Payload; };
            await using (var listen = new NpgsqlCommand("LISTEN after_flood", web)) await listen.ExecuteNonQueryAsync();
            var sw = Stopwatch.StartNew();
            await using (var ask = new NpgsqlCommand("SELECT pg_notify('powa_collector', 'WORKERS_STATUS after_flood ')", web)) await ask.ExecuteNonQueryAsync();
            while (reply is null && sw.Elapsed < TimeSpan.FromSeconds(30)) await web.WaitAsync(TimeSpan.FromMilliseconds(50));
            answered = sw.Elapsed;
        }, () => Task.CompletedTask, note: async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            var lines = LogLines(c, "Refused", "NOTIFY flood") - linesBefore;
            return reply is null
                ? "WORKERS_STATUS NOT answered within 30 s"
                : $"WORKERS_STATUS answered in {answered.TotalMilliseconds:F0} ms ({(reply.StartsWith("WORKERS_STATUS OK {") ? "OK" : reply)}); {lines} log lines about it";
        });
    }

    /// <summary>Rows that are not one remote server: each gets its error, the others go on.</summary>
    static async Task<FaultRow> HostileRowsAsync(FaultContext c)
    {
        var hostile = new List<int>();
        var remote = c.Lab.Remotes[0];
        return await WindowAsync(c, "hostile powa_servers rows", c.Frequency * 3, async () =>
        {
            string[][] rows =
            [
                ["/var/run/postgresql", "postgres", "powa", "socket"],
                [$"{remote.Host(1)},{remote.Host(2)}", "postgres", "powa", "host list"],
                [remote.Host(remote.LoopbackAddresses), "po'st\"gres;Host=x=1", "po;wa'=\"", "quotes"],
                [remote.Host(remote.LoopbackAddresses - 1), "postgres", "powa", new string('a', 10_000) + "\nINJECTED"],
                ["hôte-ünïcode.invalid", "ユーザー", "ба́за", "non-ASCII"],
            ];
            foreach (var r in rows)
                hostile.Add(await c.Lab.RegisterAsync(r[0], remote.Port, r[3], (int)c.Frequency.TotalSeconds, remote.Password,
                    username: r[1], dbname: r[2]));
            await using var conn = await c.Measure.OpenAsync(c.Repository, c.Repository.Database!, TimeSpan.FromSeconds(10));
            await using var reload = new NpgsqlCommand("SELECT pg_notify('powa_collector', 'RELOAD - ')", conn);
            await reload.ExecuteNonQueryAsync();
            // The collector checks who sent it while the sender is still connected, as powa-web is.
            await Task.Delay(TimeSpan.FromSeconds(2));
        }, () => Task.CompletedTask, note: async () =>
        {
            await using var conn = await c.Measure.OpenAsync(c.Repository, c.Repository.Database!, TimeSpan.FromSeconds(10));
            await using var cmd = new NpgsqlCommand(
                "SELECT srvid, errors[array_upper(errors, 1)] FROM powa_snapshot_metas WHERE srvid = ANY($1) ORDER BY srvid", conn)
                { Parameters = { new() { Value = hostile.ToArray() } } };
            var errors = new List<string>();
            await using (var r = await cmd.ExecuteReaderAsync())
                while (await r.ReadAsync()) if (!r.IsDBNull(1)) errors.Add(r.GetString(1));
            // The long alias is a valid row: it is collected; the others say why they are not.
            await using (var deactivate = new NpgsqlCommand("UPDATE powa_servers SET frequency = -1 WHERE id = ANY($1)", conn)
                             { Parameters = { new() { Value = hostile.ToArray() } } })
                await deactivate.ExecuteNonQueryAsync();
            return $"{errors.Count} of 4 refused rows with their error ({string.Join("; ", errors.Select(e => e.Length > 70 ? e[..70] + "..." : e))})";
        });
    }

    /// <summary>Two processes that know the seeds but hold no certificate of the cluster's CA try to join.</summary>
    static async Task<FaultRow> StrangersAsync(FaultContext c)
    {
        using var otherCa = LabCertificates.Create("a stranger's CA");
        var ports = ClusterNodes.FreePorts(4);
        OurCollector? plain = null, foreign = null;
        var refusalsBefore = LogLines(c, "Cluster TLS: refused", "Rejected incoming connection");
        var everUp = false;
        return await WindowAsync(c, "strangers try to join (no TLS; a certificate of another CA)", TimeSpan.FromSeconds(30), () =>
        {
            plain = Stranger(c, ports[0], ports[1], new Dictionary<string, string> { ["PowaCluster__Tls__Mode"] = "off" }, "stranger-plain");
            foreign = Stranger(c, ports[2], ports[3], otherCa.Settings("stranger").ToDictionary(kv => $"PowaCluster__{kv.Key}", kv => kv.Value),
                "stranger-foreign-ca");
            return Task.CompletedTask;
        }, async () =>
        {
            foreach (var port in new[] { ports[1], ports[3] })
                if ((await ClusterNodes.GetAsync(new ClusterNodes.Node(0, "", port, ""))).Status == 200) everUp = true;
            foreach (var s in new[] { plain, foreign }) if (s is not null) await s.DisposeAsync();
        }, note: () =>
        {
            var refusals = LogLines(c, "Cluster TLS: refused", "Rejected incoming connection") - refusalsBefore;
            return Task.FromResult(everUp ? "a stranger JOINED" : $"both refused, neither became a member; {refusals} refusal lines in the nodes' logs");
        });
    }

    static OurCollector Stranger(FaultContext c, int clusterPort, int httpPort, IReadOnlyDictionary<string, string> env, string name)
    {
        var args = new List<string> { "--cluster-host", "127.0.0.1", "--cluster-port", clusterPort.ToString(), "--http-port", httpPort.ToString() };
        foreach (var s in c.Nodes.Seeds) { args.Add("--seed"); args.Add(s); }
        return OurCollector.StartRun(c.Repository, 2, false, args, env, name, Path.Combine(c.Logs, $"{name}.log"));
    }

    /// <summary>A node whose only seed is itself forms a cluster of its own beside the real one, on the same servers.</summary>
    static async Task<FaultRow> IsolatedSeedAsync(FaultContext c)
    {
        var ports = ClusterNodes.FreePorts(2);
        OurCollector? island = null;
        return await WindowAsync(c, "an isolated seed forms its own cluster", c.Frequency * 6, () =>
        {
            var env = c.Nodes.Certificates!.Settings("island").ToDictionary(kv => $"PowaCluster__{kv.Key}", kv => kv.Value);
            island = OurCollector.StartRun(c.Repository, 2, false,
                ["--cluster-host", "127.0.0.1", "--cluster-port", ports[0].ToString(), "--http-port", ports[1].ToString(), "--seed", $"127.0.0.1:{ports[0]}"],
                env, "island", Path.Combine(c.Logs, "island.log"));
            return Task.CompletedTask;
        }, async () => { if (island is not null) await island.DisposeAsync(); }, note: () =>
        {
            var skipped = File.Exists(Path.Combine(c.Logs, "island.log"))
                ? File.ReadLines(Path.Combine(c.Logs, "island.log")).Count(l => l.Contains("snapshot skipped")) : 0;
            return Task.FromResult($"two clusters on the same servers for {c.Frequency.TotalSeconds * 6:F0} s; {skipped} snapshots skipped by the island");
        });
    }

    /// <summary>The youngest node frozen for longer than StableAfter: downed by the others, its servers move; then it wakes.</summary>
    static async Task<FaultRow> NodeFreezeAsync(FaultContext c)
    {
        var victim = c.Nodes.Nodes.Where(n => n.ExitCode is null).Last();
        var hold = TimeSpan.FromSeconds(25); // StableAfter 10 s + failure detection + down-removal-margin, and more
        return await WindowAsync(c, $"a node frozen {hold.TotalSeconds:F0} s (> StableAfter), then woken", hold,
            () => { victim.Process.Freeze(); return Task.CompletedTask; },
            () => { victim.Process.Thaw(); return Task.CompletedTask; },
            alive: () => c.Alive(victim),
            note: async () =>
            {
                for (var i = 0; i < 30 && victim.ExitCode is null; i++) await Task.Delay(1000);
                c.Gone.Add(victim);
                return $"the frozen node {(victim.ExitCode is { } code ? $"exited with code {code} (downed, as designed)" : "is still running")}";
            });
    }

    /// <summary>Lines of the cluster's nodes' logs that contain one of the needles.</summary>
    static int LogLines(FaultContext c, params string[] needles) =>
        c.Nodes.Nodes.Select(n => n.LogFile).Where(File.Exists).Sum(f =>
        {
            try
            {
                using var fs = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                using var reader = new StreamReader(fs);
                var n = 0;
                while (reader.ReadLine() is { } line) if (needles.Any(line.Contains)) n++;
                return n;
            }
            catch (IOException) { return 0; }
        });
}
