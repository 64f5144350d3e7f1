using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Faults;

/// <summary>The faults themselves (FaultsCommand.cs runs them and measures their windows).</summary>
public static partial class FaultsCommand
{
    static LocalPostgres Local(IPostgresInstance i) =>
        i as LocalPostgres ?? throw new StartupException("powa-lab faults needs local PostgreSQL instances (it stops and freezes them)");

    static Task<FaultRow> RepositoryStopAsync(FaultContext c, TimeSpan hold) =>
        WindowAsync(c, $"repository stopped {hold.TotalSeconds:F0} s", hold,
            () => Local(c.Lab.Repository).StopAsync(), () => Local(c.Lab.Repository).StartAgainAsync(),
            note: () => Task.FromResult("snapshots due while it is down are spooled on the nodes' disks and replayed after it (powa-lab outage measures it)"));

    static Task<FaultRow> RepositoryFreezeAsync(FaultContext c, TimeSpan hold) =>
        WindowAsync(c, $"repository frozen (SIGSTOP) {hold.TotalSeconds:F0} s", hold,
            () => { Local(c.Lab.Repository).Freeze(); return Task.CompletedTask; },
            () => { Local(c.Lab.Repository).Thaw(); return Task.CompletedTask; },
            note: () => Task.FromResult("snapshots read during the freeze are queued (MaxQueuedSnapshots 6 per server) and stored after it; " +
                                         "beyond that they go to the spool and are stored after it, in order"));

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
            foreign = Stranger(c, ports[2], ports[3], otherCa.Environment("stranger"),
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
            var env = c.Nodes.Certificates!.Environment("island");
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
}
