using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Npgsql;
using PowaCluster.Lab.Embedded;
using PowaCluster.Host.Cli;
using PowaCluster.Lab;
using PowaCluster.Collector.Configuration;
using PowaCluster.Host.Startup;

namespace PowaCluster.Lab.Demo;

/// <summary>
/// powa-cluster demo: a throwaway repository and remotes on loopback, servers registered on them, the
/// collector running, and what landed in the repository printed as it goes. Also the benchmark of the
/// core issue: --servers 20 --frequency 5 --seconds 60.
/// </summary>
public static class DemoCommand
{
    public static async Task<int> RunAsync(LabOptions cli)
    {
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        // SIGTERM too: stop the collector, then the throwaway instances, then exit.
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });

        Console.WriteLine($"demo: starting a throwaway repository and {cli.Remotes} remote PostgreSQL 15 instance(s) on loopback, " +
                          $"with {(cli.Powa == 5 ? "archivist 5.1.2" : "Debian's archivist")}...");
        var perRemote = (cli.Servers + cli.Remotes - 1) / cli.Remotes;
        var factory = cli.Powa != 5 ? null : LocalPostgres.Powa5Factory ?? throw new StartupException(
            "--powa 5 needs archivist 5.1.2: scripts/install-deps.sh builds it when ../shared/vendor/powa-archivist-5.1.2.tar.gz is there");
        PowaLab lab;
        try { lab = await PowaLab.StartAsync(cli.Remotes, Math.Max(2, perRemote), factory); }
        catch (InvalidOperationException e)
        {
            throw new StartupException($"cannot start the throwaway PostgreSQL instances: {e.Message}");
        }
        await using var _ = lab;
        var ids = await lab.RegisterManyAsync(cli.Servers, cli.Frequency, "demo");
        Console.WriteLine($"demo: repository on 127.0.0.1:{lab.Repository.Port}; {ids.Count} servers registered at frequency {cli.Frequency} s " +
                          $"on {string.Join(", ", lab.Remotes.Select(r => $"127.0.0.1-{lab.Remotes[0].LoopbackAddresses}:{r.Port}"))}");

        var repoDsn = lab.Repository.ConnectionString(PowaLab.Database);
        var (settings, _) = SettingsLoader.Load(cli.ToRun(repoDsn.ConnectionString),
            CollectorHost.CreateBuilder().Configuration);
        if (cli.Nodes > 1) return await RunClusterAsync(cli, lab, ids, repoDsn, settings, stop.Token);
        if (cli.SideBySide) return await RunSideBySideAsync(cli, lab, repoDsn, settings, stop.Token);
        // The collector runs in a process of its own, as in production, so that its CPU time is its own.
        // The reference for PoWA 5 is 1.3.1 (Debian's 1.2.0 knows PoWA 4 only).
        await using var collector = !cli.Reference ? OurCollector.Start(repoDsn, settings.WriterPoolSize, settings.Debug)
            : cli.Powa == 5 ? await ReferenceCollector.StartFromTarballAsync(repoDsn, ReferenceCollector.VendorTarball()
                ?? throw new StartupException("--reference --powa 5 runs powa-collector 1.3.1 from ../shared/vendor, which is not there"), "powa-collector 1.3.1")
            : await ReferenceCollector.StartAsync(repoDsn);
        var sw = Stopwatch.StartNew();
        var cpuAtStart = collector.CpuTime;
        Console.WriteLine(cli.Seconds is { } secs ? $"demo: collecting for {secs} s" : "demo: collecting until Ctrl-C");
        var maxConnections = 0;
        var cpu = TimeSpan.Zero;
        var nextReport = TimeSpan.FromSeconds(Math.Max(10, cli.Frequency * 2));
        var reportEvery = nextReport;
        await using var monitor = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString)
            { ApplicationName = "powa-cluster demo monitor" }.ConnectionString);
        await monitor.OpenAsync();
        await using var workload = await Workload.StartAsync(lab);
        var elapsed = TimeSpan.Zero;
        // CPU and snapshots at the first report: the difference to the end is the steady-state cost per
        // snapshot, without start-up and JIT warm-up.
        (TimeSpan Cpu, long Snapshots)? warm = null;
        try
        {
            while (!stop.IsCancellationRequested && (cli.Seconds is null || sw.Elapsed < TimeSpan.FromSeconds(cli.Seconds.Value)))
            {
                if (collector.ExitCode is { } code)
                    throw new StartupException($"the collector ({collector.Name}) exited with code {code}; its messages are above");
                maxConnections = Math.Max(maxConnections, await CollectorConnectionsAsync(monitor));
                if (sw.Elapsed >= nextReport)
                {
                    var seen = await PrintAsync(monitor, sw.Elapsed, cli.Powa);
                    warm ??= (collector.CpuTime - cpuAtStart, seen.Sum(r => r.Snapshots));
                    nextReport += reportEvery;
                }
                await Task.Delay(200, stop.Token).ContinueWith(_ => { });
            }
        }
        finally
        {
            cpu = collector.CpuTime - cpuAtStart;
            elapsed = sw.Elapsed;
            await collector.StopAsync();
            await workload.DisposeAsync();
        }
        var rows = await PrintAsync(monitor, elapsed, cli.Powa);
        Console.WriteLine($"demo: entries in the remotes' pg_stat_statements: {await RemoteStatementsAsync(lab)}");
        var snaps = rows.Select(r => r.Snapshots).DefaultIfEmpty(0).ToList();
        Console.WriteLine($"demo summary ({collector.Name}, powa {cli.Powa}): {rows.Count} servers at frequency {cli.Frequency} s for {elapsed.TotalSeconds:F0} s: " +
                          $"snapshots per server min {snaps.Min()} max {snaps.Max()}; servers with errors {rows.Count(r => r.Errors.Length > 0)}; " +
                          $"servers with rows: bgwriter {rows.Count(r => r.Snapshots > 0)}, {DatasourceSummary(rows, cli.Powa)}; " +
                          $"repository connections held by the collector at most {maxConnections}" +
                          (cli.Reference ? "" : $" (bound: pool {settings.WriterPoolSize} + coordinator 1 + listener 1)") +
                          $"; collector process CPU {cpu.TotalMilliseconds / Math.Max(1, snaps.Sum()):F2} ms per snapshot " +
                          $"({cpu.TotalSeconds:F1} s in all, start-up included)" +
                          (warm is { } w && snaps.Sum() > w.Snapshots
                              ? $", {(cpu - w.Cpu).TotalMilliseconds / (snaps.Sum() - w.Snapshots):F2} ms per snapshot after the first report"
                              : ""));
        return 0;
    }

    /// <summary>
    /// --nodes N: N powa-cluster run processes as one cluster. With --failover, the failover scenario and its
    /// figures; otherwise the usual report, with the servers held by each node.
    /// </summary>
    static async Task<int> RunClusterAsync(LabOptions cli, PowaLab lab, IReadOnlyList<int> ids,
        NpgsqlConnectionStringBuilder repoDsn, CollectorSettings settings, CancellationToken stop)
    {
        if (cli.Reference) throw new StartupException("--reference runs one reference collector: leave --nodes out");
        await using var nodes = ClusterNodes.Start(repoDsn, cli.Nodes, settings.WriterPoolSize, settings.Debug);
        Console.WriteLine($"demo: waiting for the {cli.Nodes} nodes to form a cluster (GET /ready on each)...");
        try { await nodes.WaitReadyAsync(TimeSpan.FromSeconds(90)); }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException) { throw new StartupException(e.Message); }
        if (cli.Failover)
        {
            var scenario = new FailoverScenario(repoDsn, lab.Remotes.Select(r => r.ConnectionString("postgres")).ToList(), nodes, ids,
                cli.Frequency, settings.StableAfter, m => Console.WriteLine($"demo: {m}"));
            FailoverReport report;
            try { report = await scenario.RunAsync(stop); }
            catch (TimeoutException e) { throw new StartupException($"{e.Message}; the nodes' logs: {string.Join(", ", nodes.Nodes.Select(n => n.LogFile))}"); }
            foreach (var e in report.Errors.Take(10)) Console.WriteLine($"demo: error recorded: {e}");
            Console.WriteLine(report.Summary());
            return 0;
        }
        await using var monitor = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString)
            { ApplicationName = "powa-cluster demo monitor" }.ConnectionString);
        await monitor.OpenAsync(stop);
        var sw = Stopwatch.StartNew();
        var every = TimeSpan.FromSeconds(Math.Max(10, cli.Frequency * 2));
        while (!stop.IsCancellationRequested && (cli.Seconds is null || sw.Elapsed < TimeSpan.FromSeconds(cli.Seconds.Value)))
        {
            await Task.Delay(every, stop).ContinueWith(_ => { });
            await PrintAsync(monitor, sw.Elapsed, cli.Powa);
            try
            {
                var statuses = await ControlClient.ClusterStatusAsync(monitor, repoDsn, ids, TimeSpan.FromSeconds(3));
                Console.WriteLine("servers per node: " + string.Join(", ", statuses.Values.GroupBy(v => v.Node).OrderBy(g => g.Key)
                    .Select(g => $"{g.Key} {g.Count()}")));
            }
            catch (StartupException e) { Console.WriteLine($"servers per node: unknown ({e.Message})"); }
            if (nodes.Nodes.FirstOrDefault(n => n.ExitCode is not null) is { } gone)
                throw new StartupException($"{gone.Name} exited with code {gone.ExitCode}; see {gone.LogFile}");
        }
        return 0;
    }

    /// <summary>
    /// A monitored server has activity: every datasource is fed, and every snapshot finds the workload's quals
    /// (the demo's servers share two instances, and each pg_qualstats reset empties an instance; a round every
    /// 20 ms is several between two resets, so quals rows per snapshot do not depend on how the collector
    /// spaces its snapshots, and the collectors can be compared on them).
    /// </summary>
    sealed class Workload : IAsyncDisposable
    {
        static readonly TimeSpan Period = TimeSpan.FromMilliseconds(20);
        readonly List<NpgsqlConnection> _connections = [];
        readonly CancellationTokenSource _stop = new();
        Task _loop = Task.CompletedTask;

        public static async Task<Workload> StartAsync(PowaLab lab)
        {
            var w = new Workload();
            foreach (var r in lab.Remotes)
            {
                var c = new NpgsqlConnection(r.ConnectionString(PowaLab.Database).ConnectionString);
                await c.OpenAsync();
                w._connections.Add(c);
            }
            w._loop = Task.Run(async () =>
            {
                while (!w._stop.IsCancellationRequested)
                {
                    foreach (var c in w._connections) await PowaLab.WorkAsync(c);
                    await Task.Delay(Period, w._stop.Token).ContinueWith(_ => { });
                }
            });
            return w;
        }

        public async ValueTask DisposeAsync()
        {
            if (_stop.IsCancellationRequested) return;
            _stop.Cancel();
            try { await _loop; }
            finally
            {
                foreach (var c in _connections) await c.DisposeAsync();
                _stop.Dispose();
            }
        }
    }

    /// <summary>
    /// --side-by-side: powa-cluster into database powa and the reference into powa_reference of the same
    /// repository instance, at the same time, on the same remote servers and workload; then the rows each stored
    /// per snapshot, datasource by datasource. Both read the same remote state, so what differs is the
    /// collectors (and pg_qualstats, which each snapshot resets for both: the quals are shared out between them).
    /// </summary>
    static async Task<int> RunSideBySideAsync(LabOptions cli, PowaLab lab, NpgsqlConnectionStringBuilder repoDsn,
        CollectorSettings settings, CancellationToken stop)
    {
        const string refDb = "powa_reference";
        await PowaLab.InstallPowaAsync(lab.Repository, withStatsExtensions: true, database: refDb);
        await lab.RegisterManyAsync(cli.Servers, cli.Frequency, "demo", repositoryDatabase: refDb);
        var refDsn = new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString) { Database = refDb };
        await using var ours = OurCollector.Start(repoDsn, settings.WriterPoolSize, settings.Debug);
        await using var reference = cli.Powa == 5
            ? await ReferenceCollector.StartFromTarballAsync(refDsn, ReferenceCollector.VendorTarball()
                ?? throw new StartupException("--side-by-side --powa 5 runs powa-collector 1.3.1 from ../shared/vendor, which is not there"), "powa-collector 1.3.1")
            : await ReferenceCollector.StartAsync(refDsn);
        await using var workload = await Workload.StartAsync(lab);
        var seconds = cli.Seconds ?? 60;
        Console.WriteLine($"demo: {ours.Name} into database powa and {reference.Name} into {refDb}, side by side for {seconds} s");
        await Task.Delay(TimeSpan.FromSeconds(seconds), stop).ContinueWith(_ => { });
        await ours.StopAsync();
        await reference.StopAsync();
        await workload.DisposeAsync();
        var rows = new List<List<Row>>();
        foreach (var dsn in new[] { repoDsn, refDsn })
        {
            await using var monitor = new NpgsqlConnection(dsn.ConnectionString);
            await monitor.OpenAsync();
            rows.Add(await PrintAsync(monitor, TimeSpan.FromSeconds(seconds), cli.Powa));
        }
        Console.WriteLine($"--- rows stored, side by side: {ours.Name} / {reference.Name} ---");
        var (a, b) = (Summarize(rows[0], cli.Powa), Summarize(rows[1], cli.Powa));
        foreach (var (label, value) in a)
        {
            var other = b[label];
            var diff = other == 0 ? (value == 0 ? "0.0 %" : "-") : $"{(value - other) / other * 100:+0.0;-0.0;0.0} %";
            Console.WriteLine($"{label,-58} {value,10:F1} {other,10:F1} {diff,9}");
        }
        Console.WriteLine($"demo summary (side by side, powa {cli.Powa}): snapshots per server {ours.Name} min {rows[0].Min(r => r.Snapshots)} " +
                          $"max {rows[0].Max(r => r.Snapshots)}, {reference.Name} min {rows[1].Min(r => r.Snapshots)} max {rows[1].Max(r => r.Snapshots)}; " +
                          $"servers with errors {rows[0].Count(r => r.Errors.Length > 0)} / {rows[1].Count(r => r.Errors.Length > 0)}");
        return 0;
    }

    /// <summary>Where Row.Own counts a datasource's rows of the collector's own statements; -1: not counted.</summary>
    static int OwnIndex(string label) => label switch { "statements" => 0, "waits" => 1, "quals" => 2, _ => -1 };

    /// <summary>
    /// What the collectors are compared on, per datasource: rows per snapshot (and for statements, waits and
    /// quals, without the collectors' own statements); catalogs, read once per server, per server.
    /// </summary>
    static Dictionary<string, double> Summarize(List<Row> rows, int powa)
    {
        var snapshots = Math.Max(1, rows.Sum(r => r.Snapshots));
        var servers = Math.Max(1, rows.Count);
        var result = new Dictionary<string, double> { ["snapshots per server"] = rows.Sum(r => r.Snapshots) / (double)servers };
        foreach (var (d, i) in Datasources(powa).Select((d, i) => (d, i)))
        {
            if (d.Table.StartsWith("powa_catalog_"))
            {
                result[$"{d.Label} rows per server"] = rows.Sum(r => r.Counts[i]) / (double)servers;
                continue;
            }
            result[$"{d.Label} rows per snapshot"] = rows.Sum(r => r.Counts[i]) / (double)snapshots;
            var own = OwnIndex(d.Label);
            if (own >= 0)
                result[$"{d.Label} rows per snapshot, without the collectors' own statements"] =
                    rows.Sum(r => r.Counts[i] - r.Own[own]) / (double)snapshots;
        }
        return result;
    }

    static async Task<int> CollectorConnectionsAsync(NpgsqlConnection monitor)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'PoWA collector%'", monitor);
        return Convert.ToInt32(await cmd.ExecuteScalarAsync());
    }

    /// <param name="Own">statements rows of the collector's own COPY statements, and wait_sampling and qualstats rows of a
    /// statement that is not the workload's (while the demo runs, the collector's): what the collectors leave in the remote's
    /// pg_stat_statements and pg_wait_sampling differs by design, the rest is what they are compared on</param>
    sealed record Row(int SrvId, string Alias, string Server, long Snapshots, long[] Counts, string[] Errors, long[] Own);

    /// <summary>A statement of a collector (ours or the reference), as pg_stat_statements shows it: a COPY of a query.</summary>
    const string OwnStatement = "q.query LIKE 'COPY (SELECT %'";

    /// <summary>A statement of the demo's workload (PowaLab.WorkloadSql): it names the lab's table or function.</summary>
    const string WorkloadStatement = "q.query ~ 'lab_[tf]'";

    /// <summary>The datasources the report counts rows of, per powa major: a short label and the table.</summary>
    static (string Label, string Table)[] Datasources(int powa) => powa >= 5
        ?
        [
            ("statements", "powa_statements_history_current"), ("kcache", "powa_kcache_metrics_current"),
            ("quals", "powa_qualstats_quals_history_current"), ("waits", "powa_wait_sampling_history_current"),
            ("tables", "powa_all_tables_history_current"), ("indexes", "powa_all_indexes_history_current"),
            ("activity", "powa_stat_activity_history_current"), ("class", "powa_catalog_class"),
            ("attribute", "powa_catalog_attribute"), ("databases", "powa_catalog_databases"),
        ]
        :
        [
            ("statements", "powa_statements_history_current"), ("kcache", "powa_kcache_metrics_current"),
            ("quals", "powa_qualstats_quals_history_current"), ("waits", "powa_wait_sampling_history_current"),
            ("relations", "powa_all_relations_history_current"), ("functions", "powa_user_functions_history_current"),
        ];

    /// <summary>Per server: snapshots (one powa_stat_bgwriter row each), rows of each datasource, errors.</summary>
    static string CountsSql(int powa) =>
        "SELECT s.id, coalesce(s.alias, ''), s.hostname || ':' || s.port, " +
        "(SELECT count(*) FROM powa_stat_bgwriter_history_current x WHERE x.srvid = s.id) " +
        "+ (SELECT coalesce(sum(cardinality(records)), 0) FROM powa_stat_bgwriter_history x WHERE x.srvid = s.id), " +
        "ARRAY[" + string.Join(", ", Datasources(powa).Select(d => $"(SELECT count(*) FROM {d.Table} x WHERE x.srvid = s.id)")) + "], " +
        "coalesce(m.errors, '{}'), " +
        "ARRAY[(SELECT count(*) FROM powa_statements_history_current x JOIN powa_statements q USING (srvid, queryid, dbid, userid) " +
        $"WHERE x.srvid = s.id AND {OwnStatement}), " +
        // Waits with no queryid are background processes' and idle sessions'; a queryid that is not the workload's
        // is a collector statement (pg_wait_sampling samples every backend, the collector's own included).
        "(SELECT count(*) FROM powa_wait_sampling_history_current x WHERE x.srvid = s.id AND x.queryid <> 0 AND NOT EXISTS " +
        $"(SELECT 1 FROM powa_statements q WHERE q.srvid = x.srvid AND q.queryid = x.queryid AND {WorkloadStatement})), " +
        // Quals of a statement that is not the workload's: a collector's (pg_qualstats samples every statement).
        "(SELECT count(*) FROM powa_qualstats_quals_history_current x WHERE x.srvid = s.id AND NOT EXISTS " +
        $"(SELECT 1 FROM powa_statements q WHERE q.srvid = x.srvid AND q.queryid = x.queryid AND {WorkloadStatement}))] " +
        "FROM powa_servers s JOIN powa_snapshot_metas m ON m.srvid = s.id WHERE s.id > 0 ORDER BY s.id";

    static async Task<List<Row>> PrintAsync(NpgsqlConnection monitor, TimeSpan elapsed, int powa)
    {
        var rows = new List<Row>();
        await using (var cmd = new NpgsqlCommand(CountsSql(powa), monitor))
        await using (var r = await cmd.ExecuteReaderAsync())
            while (await r.ReadAsync())
                rows.Add(new Row(r.GetInt32(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetFieldValue<long[]>(4),
                    r.GetFieldValue<string[]>(5), r.GetFieldValue<long[]>(6)));
        var labels = Datasources(powa).Select(d => d.Label).ToList();
        Console.WriteLine($"--- after {elapsed.TotalSeconds:F0} s: rows stored in the repository per server ---");
        Console.WriteLine($"{"srvid",5} {"alias",-9} {"server",-17} {"snapshots",9} " + string.Join(" ", labels.Select(l => $"{l,10}")) + "  errors");
        foreach (var x in rows)
            Console.WriteLine($"{x.SrvId,5} {x.Alias,-9} {x.Server,-17} {x.Snapshots,9} " + string.Join(" ", x.Counts.Select(c => $"{c,10}")) +
                              $"  {(x.Errors.Length == 0 ? "-" : string.Join(" | ", x.Errors))}");
        return rows;
    }

    /// <summary>Servers with rows, and rows per snapshot, of each datasource: what the collectors are compared on.</summary>
    static string DatasourceSummary(List<Row> rows, int powa)
    {
        var snapshots = Math.Max(1, rows.Sum(r => r.Snapshots));
        return string.Join(", ", Datasources(powa).Select((d, i) =>
        {
            var text = $"{d.Label} {rows.Count(r => r.Counts[i] > 0)} ({rows.Sum(r => r.Counts[i]) / (double)snapshots:F1} rows per snapshot";
            var own = OwnIndex(d.Label);
            if (own >= 0)
                text += $"; {rows.Sum(r => r.Counts[i] - r.Own[own]) / (double)snapshots:F1} without the collector's own " +
                        (own == 0 ? "COPY statements" : "statements");
            return text + ")";
        }));
    }

    /// <summary>
    /// What the collector left in each remote's pg_stat_statements: its entries, and how many are a collector's
    /// COPY statements (PostgreSQL 15 keys a COPY by its text: a literal in it makes an entry per snapshot).
    /// </summary>
    static async Task<string> RemoteStatementsAsync(PowaLab lab)
    {
        var parts = new List<string>();
        foreach (var r in lab.Remotes)
        {
            await using var conn = new NpgsqlConnection(r.ConnectionString(PowaLab.Database).ConnectionString);
            await conn.OpenAsync();
            await using var cmd = new NpgsqlCommand(
                $"SELECT count(*), count(*) FILTER (WHERE {OwnStatement}) FROM pg_stat_statements q", conn);
            await using var rd = await cmd.ExecuteReaderAsync();
            await rd.ReadAsync();
            parts.Add($"{r.Name} {rd.GetInt64(0)} ({rd.GetInt64(1)} of them COPY statements of the collector)");
        }
        return string.Join(", ", parts);
    }
}
