using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Bench;

/// <summary>One collector run, measured over its steady-state window.</summary>
public sealed record BenchRow(string Collector, int Servers, int Frequency, int Snapshots, int Due, double ErrP50, double ErrP99,
    double CpuMsPerSnapshot, double CpuPercent, long RssBytes, int Threads, int RepoConnections, double Seconds,
    double KernelMsPerSnapshot)
{
    public double PerSecond => Snapshots / Seconds;
}

/// <summary>
/// powa-lab bench: our collector and the references one after the other on the same throwaway servers, and
/// one table. Everything is read from the repository (one powa_stat_bgwriter row per snapshot, with the
/// remote's timestamp) and from /proc (CPU, resident memory, threads); the collectors run as processes of
/// their own.
/// </summary>
public static class BenchCommand
{
    public static async Task<int> RunAsync(LabOptions o)
    {
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        // SIGTERM too (a background job ignores SIGINT): stop the collector, then the throwaway instances.
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stop.Cancel(); });
        var loads = o.Loads ?? [];
        var most = new[] { o.Servers }.Concat(loads).Max();
        if (o.Pin) await CoreSplit.PinThisProcessAsync();
        Say($"starting a throwaway repository and {o.Remotes} remote instance(s), 300 statements each");
        PowaLab lab;
        try { lab = await PowaLab.StartAsync(o.Remotes, LocalPostgres.MaxLoopbackAddresses); }
        catch (InvalidOperationException e) { throw new StartupException($"cannot start the throwaway PostgreSQL instances: {e.Message}"); }
        await using var _ = lab;
        if (o.Pin)
        {
            await CoreSplit.PinRepositoryAsync(lab.Repository);
            Say($"pinned: {CoreSplit.Describe}");
        }
        foreach (var r in lab.Remotes) await PowaLab.MakeStatementsAsync(r, 300);
        var repoDsn = lab.Repository.ConnectionString(PowaLab.Database);
        await using var repo = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString)
        { ApplicationName = "powa-lab bench monitor" }.ConnectionString);
        await repo.OpenAsync();
        await using var bench = new BenchRuns(lab, repo, o, stop.Token);
        using var workload = bench.StartWorkload();

        var rows = new List<BenchRow>();
        var notes = new List<string>();
        // Idle: no server registered yet; beside it the stack's floor, measured the same way.
        if (o.IdleSeconds > 0 && (!o.Quick || o.IdleGiven))
        {
            var idle = await bench.RunAsync(Ours(o, repoDsn), 0, o.Frequency, TimeSpan.FromSeconds(o.Warmup), TimeSpan.FromSeconds(o.IdleSeconds));
            rows.Add(idle with { Collector = "powa-cluster, idle (no server)" });
            rows.Add(await bench.RunAsync(StackNodeProcess.StartAsync, 0, o.Frequency, TimeSpan.FromSeconds(o.Warmup), TimeSpan.FromSeconds(o.IdleSeconds)));
        }
        await bench.EnsureServersAsync(most);

        // The comparison, on the same servers, one collector after the other.
        rows.Add(await bench.RunAsync(Ours(o, repoDsn), o.Servers, o.Frequency));
        // The cost of the metrics: the same, serving /metrics and scraped every 15 s (the row above has no exporter).
        var scraped = await bench.RunAsync(ScrapedCollector.Start(args => StartOurs(o, repoDsn, args)), o.Servers, o.Frequency);
        rows.Add(scraped with { Collector = $"powa-cluster, /metrics scraped every {ScrapedCollector.Every.TotalSeconds:F0} s" });
        if (o.Quick)
        {
            foreach (var n in loads) rows.Add(await bench.RunAsync(Ours(o, repoDsn), n, o.Frequency));
            string? frozenOnly = null;
            if (o.FrozenGiven && o.FrozenSeconds > 0 && lab.Remotes.Count >= 2 && lab.Remotes[1] is LocalPostgres v)
                frozenOnly = await bench.FrozenRemoteAsync(Ours(o, repoDsn), v, TimeSpan.FromSeconds(o.FrozenSeconds));
            Print(rows, null, null, 0, null, frozenOnly, [], o);
            return 0;
        }
        if (ReferenceCollector.VendorTarball() is { } vendor)
            rows.Add(await bench.RunAsync(() => ReferenceCollector.StartFromTarballAsync(repoDsn, vendor, "powa-collector 1.3.1"), o.Servers, o.Frequency));
        else notes.Add("powa-collector 1.3.1: not measured (../shared/vendor/powa-collector-1.3.1.tar.gz not found)");
        if (Directory.Exists(ReferenceCollector.DebianModule))
            rows.Add(await bench.RunAsync(() => ReferenceCollector.StartAsync(repoDsn), o.Servers, o.Frequency));
        else notes.Add("powa-collector 1.2.0: not measured (apt-get install powa-collector)");

        foreach (var n in loads) rows.Add(await bench.RunAsync(Ours(o, repoDsn), n, o.Frequency));

        // The repository's own limit, then our throughput when asked for more than it can do.
        var pool = o.PoolSize ?? new Collector.Configuration.CollectorSettings().WriterPoolSize;
        Say("measuring the repository's own limit: stored snapshots back to back, no collector");
        var limitServers = await bench.LimitServersAsync(16);
        var stages = await RepositoryLimit.ReadStagesAsync(repoDsn, limitServers);
        var limits = new Dictionary<int, double>();
        foreach (var c in new[] { 1, 2, 4, 8 }.Append(pool).Distinct().Order())
        {
            limits[c] = await RepositoryLimit.MeasureAsync(repoDsn, stages, c, TimeSpan.FromSeconds(5));
            Say($"repository's limit on {c} connection(s): {limits[c]:F1} snapshots/s");
        }
        // The most any collector could store here: the same, each snapshot read off its remote first (the
        // remotes share this machine's cores with the repository), with no actor system in between.
        var withReads = await RepositoryLimit.MeasureWithReadsAsync(repoDsn, limitServers, pool, TimeSpan.FromSeconds(10),
            notBeforeUtc: stages.Max(s => s.TakenAtUtc));
        foreach (var s in stages) s.Dispose();
        await bench.DropLimitServersAsync(limitServers.Select(s => s.Item1));
        Say($"read and store back to back on {pool} connection(s): {withReads:F1} snapshots/s");
        var saturating = (int)Math.Ceiling(limits.Values.Max() * o.Frequency * 1.5);
        await bench.EnsureServersAsync(saturating);
        // Pinned, the pool sizes side by side and loads below the limit (their interval error); else the pool
        // of the run only.
        var sizes = o.Pin ? new[] { 1, 2, 4 }.Append(pool).Distinct().Order().ToArray() : [pool];
        // The limit again on the saturated run's own servers, counted over the same window after the same
        // warm-up: a repository that holds that many servers' statements, and rewrites them for every snapshot
        // all along a run, stores fewer a second than one with 16 servers for 5 s, and fewer the longer it runs.
        // This is the limit the saturated rows are measured against.
        Say($"measuring the repository's limit on the saturated run's {saturating} servers, {o.Warmup} s then {o.Seconds ?? 60} s counted, on each pool size");
        var fleetStages = await RepositoryLimit.ReadStagesAsync(repoDsn, bench.Fleet(saturating));
        var fleetLimits = new Dictionary<int, double>();
        foreach (var c in sizes)
        {
            fleetLimits[c] = await RepositoryLimit.MeasureAsync(repoDsn, fleetStages, c, TimeSpan.FromSeconds(o.Seconds ?? 60),
                TimeSpan.FromSeconds(o.Frequency), TimeSpan.FromSeconds(o.Warmup));
            Say($"repository's limit on {saturating} servers on {c} connection(s): {fleetLimits[c]:F1} snapshots/s");
        }
        foreach (var s in fleetStages) s.Dispose();
        var limit = fleetLimits[pool];
        var saturated = new Dictionary<int, BenchRow>();
        foreach (var size in sizes)
        {
            var row = await bench.RunAsync(Ours(o with { PoolSize = size }, repoDsn), saturating, o.Frequency);
            saturated[size] = row with { Collector = $"powa-cluster, saturated, pool {size}" };
            rows.Add(saturated[size]);
        }
        var sat = saturated[pool];
        if (o.Pin)
            foreach (var share in new[] { 50, 80 })
            {
                var n = (int)Math.Floor(limit * o.Frequency * share / 100);
                if (n < 1) continue;
                var below = await bench.RunAsync(Ours(o, repoDsn), n, o.Frequency);
                rows.Add(below with { Collector = $"powa-cluster, {share} % of the limit, pool {pool}" });
            }

        // One remote frozen: the other remote's servers must keep their schedule.
        string? frozen = null;
        if (o.FrozenSeconds > 0 && lab.Remotes.Count >= 2 && lab.Remotes[1] is LocalPostgres victim)
            frozen = await bench.FrozenRemoteAsync(Ours(o, repoDsn), victim, TimeSpan.FromSeconds(o.FrozenSeconds));

        Print(rows, limits, fleetLimits, pool, sat, frozen, notes, o);
        if (saturated.Count > 1)
        {
            var best = saturated.MaxBy(kv => kv.Value.PerSecond);
            Console.WriteLine("saturated by pool size: " + string.Join(", ", saturated.Select(kv =>
                $"{kv.Key}: {kv.Value.PerSecond:F1}/s = {kv.Value.PerSecond / fleetLimits[kv.Key] * 100:F0} % of the limit on {kv.Key}")) +
                $"; most stored with pool {best.Key} ({best.Value.PerSecond / fleetLimits.Values.Max() * 100:F0} % of the repository's best)");
        }
        Console.WriteLine($"read and store back to back, no collector, {pool} connection(s): {withReads:F1}/s; powa-cluster saturated: " +
                          $"{sat.PerSecond / withReads * 100:F0} % of it");
        return 0;
    }

    /// <summary>powa-cluster run with its defaults (the pool size if given), its log in a file of its own.</summary>
    static Func<Task<IDemoCollector>> Ours(LabOptions o, NpgsqlConnectionStringBuilder repo) => () =>
        Task.FromResult(StartOurs(o, repo, []));

    static IDemoCollector StartOurs(LabOptions o, NpgsqlConnectionStringBuilder repo, IReadOnlyList<string> args)
    {
        var log = Path.Combine(Path.GetTempPath(), $"powa-lab-bench-{Environment.ProcessId}-{++_runs}.log");
        return OurCollector.StartRun(repo, o.PoolSize ?? new Collector.Configuration.CollectorSettings().WriterPoolSize,
            o.Debug, args, new Dictionary<string, string>(), "powa-cluster", log);
    }

    static int _runs;

    internal static void Say(string m) => Console.WriteLine($"bench: {m}");

    static void Print(List<BenchRow> rows, Dictionary<int, double>? limits, Dictionary<int, double>? fleetLimits, int pool, BenchRow? sat,
        string? frozen, List<string> notes, LabOptions o)
    {
        Console.WriteLine();
        Console.WriteLine($"## powa-lab bench: steady-state window {o.Seconds} s after {o.Warmup} s of warm-up, each collector started fresh" +
                          (o.Pin ? $"; {CoreSplit.Describe}" : ""));
        Console.WriteLine();
        Console.WriteLine("| collector | servers at frequency | snapshots (due) | interval error p50 / p99 | CPU per snapshot (in the kernel) | CPU % of a core | resident memory | threads | repository connections |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Collector} | {r.Servers} at {r.Frequency} s | {r.Snapshots} ({r.Due}) | " +
                              (double.IsNaN(r.ErrP50) ? "- | " : $"{r.ErrP50 * 100:F1} % / {r.ErrP99 * 100:F1} % | ") +
                              (r.Snapshots > 0 ? $"{r.CpuMsPerSnapshot:F2} ms ({r.KernelMsPerSnapshot:F2})" : "-") + $" | {r.CpuPercent:F2} % | " +
                              $"{r.RssBytes / 1048576.0:F0} MB | {r.Threads} | {r.RepoConnections} |");
        if (limits is null || fleetLimits is null || sat is null)
        {
            if (frozen is not null) Console.WriteLine(frozen);
            return;
        }
        Console.WriteLine();
        Console.WriteLine("repository's own limit (binary COPY in + powa_take_snapshot back to back, no collector), 16 servers, 5 s each: " +
                          string.Join(", ", limits.Select(kv => $"{kv.Value:F1}/s on {kv.Key} connection(s)")));
        Console.WriteLine($"the same on the saturated run's {sat.Servers} servers, {o.Seconds ?? 60} s counted after {o.Warmup} s, as its rows: " +
                          string.Join(", ", fleetLimits.Select(kv => $"{kv.Value:F1}/s on {kv.Key} connection(s)")));
        var limit = fleetLimits[pool];
        Console.WriteLine($"saturation: {sat.Servers} servers at {sat.Frequency} s ask {sat.Servers / (double)sat.Frequency:F1}/s; " +
                          $"powa-cluster (pool {pool}) stored {sat.PerSecond:F1}/s = {sat.PerSecond / limit * 100:F0} % of the repository's limit on those servers on {pool} connections " +
                          $"({sat.PerSecond / fleetLimits.Values.Max() * 100:F0} % of its best; {sat.PerSecond / limits[pool] * 100:F0} % of the 16 servers' limit)");
        if (frozen is not null) Console.WriteLine(frozen);
        foreach (var n in notes) Console.WriteLine(n);
    }
}
