using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Bench;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Outage;

/// <summary>
/// powa-lab outage: the repository stopped for minutes while powa-cluster and the reference collector run side
/// by side on the same remote servers, each into a repository database of its own on the one repository
/// instance (stopping it stops both). Measured from the repositories (one powa_stat_bgwriter row per stored
/// snapshot, with the remote's timestamp), from powa-cluster's /metrics and spool directory, and from /proc:
/// snapshots due during the outage, spooled, replayed, stored, lost; how long the backlog took to drain; the
/// longest delay (stored − taken) of a live snapshot of a server without a backlog during the drain (servers
/// activated when the repository comes back, and those whose backlog is replayed already); peak resident memory.
/// </summary>
public static class OutageCommand
{
    const string ReferenceDb = "powa_reference";
    const int Fresh = 4;

    public static async Task<int> RunAsync(LabOptions o)
    {
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        try { return await RunAsync(o, stop.Token); }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            Say("interrupted: everything it started is stopped and deleted");
            return 130;
        }
    }

    static async Task<int> RunAsync(LabOptions o, CancellationToken stop)
    {
        Say($"starting a throwaway repository and {o.Remotes} remote instance(s), {o.Statements} more statements each");
        PowaLab lab;
        try { lab = await PowaLab.StartAsync(o.Remotes, LocalPostgres.MaxLoopbackAddresses); }
        catch (InvalidOperationException e) { throw new StartupException($"cannot start the throwaway PostgreSQL instances: {e.Message}"); }
        await using var _ = lab;
        var repository = lab.Repository as LocalPostgres ?? throw new StartupException("powa-lab outage stops a local repository instance");
        if (o.Statements > 0)
            foreach (var r in lab.Remotes) await PowaLab.MakeStatementsAsync(r, o.Statements);
        await PowaLab.InstallPowaAsync(repository, withStatsExtensions: true, database: ReferenceDb);
        var ours = await lab.RegisterManyAsync(o.Servers, o.Frequency, "outage");
        var fresh = await lab.RegisterManyAsync(Fresh, o.Frequency, "fresh", first: o.Servers);
        var theirs = await lab.RegisterManyAsync(o.Servers, o.Frequency, "outage", ReferenceDb);
        var repoDsn = repository.ConnectionString(PowaLab.Database);
        await ScalarAsync<object?>(repoDsn, "UPDATE powa_servers SET frequency = -1 WHERE id = ANY($1)", fresh.ToArray()); // activated at the return
        await using var workload = await Workload.StartAsync(lab);

        var spool = Directory.CreateTempSubdirectory("powa-lab-outage-spool-").FullName;
        try { return await MeasureAsync(o, lab, repository, spool, (ours, fresh, theirs), stop); }
        finally
        {
            try { Directory.Delete(spool, recursive: true); } catch (IOException) { /* a temporary directory */ }
        }
    }

    static async Task<int> MeasureAsync(LabOptions o, PowaLab lab, LocalPostgres repository, string spool,
        (IReadOnlyList<int> Ours, IReadOnlyList<int> Fresh, IReadOnlyList<int> Theirs) servers, CancellationToken stop)
    {
        var (ours, fresh, theirs) = servers;
        var outage = TimeSpan.FromSeconds(o.Seconds ?? 300);
        var frequency = TimeSpan.FromSeconds(o.Frequency);
        var repoDsn = repository.ConnectionString(PowaLab.Database);
        var refDsn = repository.ConnectionString(ReferenceDb);
        var port = ClusterNodes.FreePorts(1)[0];
        var log = Path.Combine(Path.GetTempPath(), $"powa-lab-outage-{Environment.ProcessId}.log");
        await using var cluster = OurCollector.StartRun(repoDsn, o.PoolSize ?? new Collector.Configuration.CollectorSettings().WriterPoolSize, o.Debug,
            ["--http-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            new Dictionary<string, string> { ["PowaCluster__SpoolDirectory"] = spool }, "powa-cluster", log);
        var started = ReferenceCollector.VendorTarball() is { } vendor
            ? await ReferenceCollector.StartFromTarballAsync(refDsn, vendor, "powa-collector 1.3.1")
            : Directory.Exists(ReferenceCollector.DebianModule) ? await ReferenceCollector.StartAsync(refDsn) : null;
        await using var __ = started;
        var reference = started;
        Say($"{o.Servers} servers at {o.Frequency} s for each collector (powa-cluster's log: {log}); {o.Warmup} s of warm-up, " +
            $"then the repository stopped for {outage.TotalSeconds:F0} s");
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup), stop);
        if (reference?.ExitCode is { } refCode)
        {
            Say($"{reference.Name} exited with code {refCode} during the warm-up (its log says why): measured without it");
            reference = null;
        }

        var peaks = new Peaks(cluster.Pid, reference?.Pid);
        await repository.StopAsync();
        var stoppedAt = LabClock.Utc;
        Say($"repository stopped at {stoppedAt:HH:mm:ss} UTC");
        while (LabClock.Utc - stoppedAt < outage)
        {
            peaks.Sample(during: true);
            await Task.Delay(1000, stop);
            if (cluster.ExitCode is { } code) throw new StartupException($"powa-cluster exited with code {code} during the outage; see {log}");
        }
        await repository.StartAgainAsync();
        var startedAt = LabClock.Utc;
        // The reference's figure is final now (it keeps nothing to store later); stopped, so that the drain is
        // measured on powa-cluster's own load (on a 2-core machine both at once saturate the repository).
        if (reference is not null) await reference.StopAsync();
        var backlog = Spooled(spool);
        var onDisk = Directory.EnumerateFiles(spool, "*.snap", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Say($"repository started again at {startedAt:HH:mm:ss} UTC; {backlog.Values.Sum()} snapshots spooled ({onDisk / 1048576.0:F0} MB on disk, " +
            $"{onDisk / 1024.0 / Math.Max(1, backlog.Values.Sum()):F0} kB each, deflated); {Fresh} servers activated now (no backlog)");
        await ScalarAsync<object?>(repoDsn, "UPDATE powa_servers SET frequency = $2 WHERE id = ANY($1)", fresh.ToArray(), o.Frequency);
        await ScalarAsync<object?>(repoDsn, "SELECT pg_notify('powa_collector', 'RELOAD - ')");

        // The drain: how long until the spool is empty, and how long live snapshots of servers without a
        // backlog wait for the repository meanwhile (stored − taken, from powa_snapshot_metas.snapts).
        var live = new LiveDelays();
        var drainedAt = DateTime.MaxValue;
        await using (var monitor = new NpgsqlConnection(repoDsn.ConnectionString))
        {
            await monitor.OpenAsync(stop);
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed < TimeSpan.FromMinutes(30))
            {
                peaks.Sample(during: false);
                var left = Spooled(spool);
                await live.PollAsync(monitor, ours.Concat(fresh).Where(id => !left.ContainsKey(id)).ToList());
                if (left.Count == 0 && drainedAt == DateTime.MaxValue)
                {
                    drainedAt = LabClock.Utc;
                    Say($"spool empty {(drainedAt - startedAt).TotalSeconds:F1} s after the restart");
                }
                if (drainedAt != DateTime.MaxValue && LabClock.Utc - drainedAt > frequency * 3) break;
                await Task.Delay(250, stop);
            }
        }
        var metrics = await Metrics.ScrapeAsync(port);
        await cluster.StopAsync();

        var due = (int)Math.Round(o.Servers * outage.TotalSeconds / o.Frequency);
        var ourStored = await StoredDuringAsync(repoDsn, ours, stoppedAt, startedAt);
        var refStored = reference is null ? 0 : await StoredDuringAsync(refDsn, theirs, stoppedAt, startedAt);
        var holes = await LongestGapAsync(repoDsn, ours, stoppedAt - frequency * 2, drainedAt);
        Console.WriteLine();
        Console.WriteLine($"## powa-lab outage: repository stopped {outage.TotalSeconds:F0} s, {o.Servers} servers at {o.Frequency} s per collector, " +
                          $"same remotes, same run");
        Console.WriteLine();
        Console.WriteLine("| collector | snapshots due during the outage | spooled | replayed | stored (distinct ts in the history) | lost | " +
                          "backlog drained in | live snapshot delay during the drain, longest | resident memory, peak during the outage / the drain |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        Console.WriteLine($"| powa-cluster | {due} | {metrics("powa_spool_spooled_total")} | {metrics("powa_spool_replayed_total")} | {ourStored} | " +
                          $"{Math.Max(0, due - ourStored)} | {(drainedAt == DateTime.MaxValue ? "not drained in 30 min" : $"{(drainedAt - startedAt).TotalSeconds:F1} s")} | " +
                          $"{live.Describe()} | {peaks.OursDuring / 1048576.0:F0} MB / {peaks.OursAfter / 1048576.0:F0} MB |");
        if (reference is not null)
            Console.WriteLine($"| {reference.Name} | {due} | - | - | {refStored} | {Math.Max(0, due - refStored)} | - | - | " +
                              $"{peaks.TheirsDuring / 1048576.0:F0} MB / - |");
        else Console.WriteLine("| reference | not measured: neither ../shared/vendor/powa-collector-1.3.1.tar.gz nor Debian's powa-collector is there |");
        Console.WriteLine();
        Console.WriteLine("(the reference ran until the repository was started again, then was stopped: what it stores of the outage is final then)");
        Console.WriteLine();
        Console.WriteLine($"powa-cluster: spool dropped {metrics("powa_spool_dropped_total")}, write failures {metrics("powa_spool_write_failures_total")}; " +
                          $"longest gap between two stored snapshots of a server from 2 intervals before the stop to the end of the drain: {holes:F1} s");
        return 0;
    }

    static void Say(string m) => Console.WriteLine($"outage: {m}");

    /// <summary>Spooled snapshots on disk per srvid (the spool's srvN directories).</summary>
    static Dictionary<int, int> Spooled(string spool)
    {
        var counts = new Dictionary<int, int>();
        foreach (var f in Directory.EnumerateFiles(spool, "*.snap", SearchOption.AllDirectories))
            if (int.TryParse(Path.GetFileName(Path.GetDirectoryName(f))![3..], out var id))
                counts[id] = counts.GetValueOrDefault(id) + 1;
        return counts;
    }

    static Task<int> StoredDuringAsync(NpgsqlConnectionStringBuilder dsn, IReadOnlyList<int> ids, DateTime from, DateTime to) =>
        ScalarAsync<int>(dsn,
            "SELECT count(*)::int FROM (SELECT DISTINCT srvid, ts FROM " + History + ") t WHERE ts > $2 AND ts < $3",
            ids.ToArray(), from, to);

    /// <summary>The longest gap between two consecutive stored snapshots of one server in the window, in seconds.</summary>
    static Task<double> LongestGapAsync(NpgsqlConnectionStringBuilder dsn, IReadOnlyList<int> ids, DateTime from, DateTime to) =>
        ScalarAsync<double>(dsn,
            "SELECT coalesce(max(extract(epoch FROM ts - prev)), 0)::float8 FROM (SELECT ts, lag(ts) OVER (PARTITION BY srvid ORDER BY ts) prev " +
            "FROM " + History + " WHERE ts BETWEEN $2 AND $3) g",
            ids.ToArray(), from, to < DateTime.MaxValue ? to : LabClock.Utc);

    /// <summary>Every stored snapshot (srvid, ts) of the servers $1, aggregated or not (one powa_stat_bgwriter row per snapshot).</summary>
    const string History = "(SELECT srvid, (record).ts FROM powa_stat_bgwriter_history_current WHERE srvid = ANY($1) " +
                           "UNION SELECT srvid, (unnest(records)).ts FROM powa_stat_bgwriter_history WHERE srvid = ANY($1)) h";

    static async Task<T> ScalarAsync<T>(NpgsqlConnectionStringBuilder dsn, string sql, params object[] args)
    {
        await using var conn = new NpgsqlConnection(dsn.ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        foreach (var a in args) cmd.Parameters.Add(new NpgsqlParameter { Value = a });
        var value = await cmd.ExecuteScalarAsync();
        return value is null or DBNull ? default! : (T)value;
    }
}
