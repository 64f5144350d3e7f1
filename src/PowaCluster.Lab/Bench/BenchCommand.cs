using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Bench;

/// <summary>One collector run, measured over its steady-state window.</summary>
public sealed record BenchRow(string Collector, int Servers, int Frequency, int Snapshots, int Due, double ErrP50, double ErrP99,
    double CpuMsPerSnapshot, double CpuPercent, long RssBytes, int Threads, int RepoConnections, double Seconds)
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
        var loads = o.Loads ?? [];
        var most = new[] { o.Servers }.Concat(loads).Max();
        var perRemote = (most + o.Remotes - 1) / o.Remotes;
        Say($"starting a throwaway repository and {o.Remotes} remote instance(s), 300 statements each");
        PowaLab lab;
        try { lab = await PowaLab.StartAsync(o.Remotes, Math.Max(2, perRemote)); }
        catch (InvalidOperationException e) { throw new StartupException($"cannot start the throwaway PostgreSQL instances: {e.Message}"); }
        await using var _ = lab;
        foreach (var r in lab.Remotes) await PowaLab.MakeStatementsAsync(r, 300);
        var repoDsn = lab.Repository.ConnectionString(PowaLab.Database);
        await using var repo = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString)
            { ApplicationName = "powa-lab bench monitor" }.ConnectionString);
        await repo.OpenAsync();
        var bench = new Bench(lab, repo, repoDsn, o, stop.Token);
        using var workload = bench.StartWorkload();

        var rows = new List<BenchRow>();
        var notes = new List<string>();
        // Idle: no server registered yet.
        if (o.IdleSeconds > 0)
        {
            var idle = await bench.RunAsync(Ours(o, repoDsn), 0, o.Frequency, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(o.IdleSeconds));
            rows.Add(idle with { Collector = "powa-cluster, idle (no server)" });
        }
        var ids = await lab.RegisterManyAsync(most, o.Frequency, "bench");
        bench.AllServers = ids;

        // The comparison, on the same servers, one collector after the other.
        rows.Add(await bench.RunAsync(Ours(o, repoDsn), o.Servers, o.Frequency));
        var vendor = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, FindShared(), "vendor", "powa-collector-1.3.1.tar.gz"));
        if (File.Exists(vendor))
            rows.Add(await bench.RunAsync(() => ReferenceCollector.StartFromTarballAsync(repoDsn, vendor, "powa-collector 1.3.1"), o.Servers, o.Frequency));
        else notes.Add($"powa-collector 1.3.1: not measured ({vendor} not found)");
        if (Directory.Exists(ReferenceCollector.DebianModule))
            rows.Add(await bench.RunAsync(() => ReferenceCollector.StartAsync(repoDsn), o.Servers, o.Frequency));
        else notes.Add("powa-collector 1.2.0: not measured (apt-get install powa-collector)");

        foreach (var n in loads) rows.Add(await bench.RunAsync(Ours(o, repoDsn), n, o.Frequency));

        // The repository's own limit, then our throughput when asked for more than it can do.
        var pool = o.PoolSize ?? new Collector.Configuration.CollectorSettings().WriterPoolSize;
        Say("measuring the repository's own limit: stored snapshots back to back, no collector");
        var stages = await RepositoryLimit.ReadStagesAsync(repoDsn, bench.ServerDsns(ids.Take(Math.Min(ids.Count, 16)).ToList()));
        var limits = new Dictionary<int, double>();
        foreach (var c in new[] { 1, 2, 4, 8 }.Append(pool).Distinct().Order())
            limits[c] = await RepositoryLimit.MeasureAsync(repoDsn, stages, c, TimeSpan.FromSeconds(5));
        foreach (var s in stages) s.Dispose();
        var limit = limits[pool];
        var saturating = (int)Math.Ceiling(limit * o.Frequency * 1.5);
        if (saturating > ids.Count) bench.AllServers = ids = [.. ids, .. await lab.RegisterManyAsync(saturating - ids.Count, o.Frequency, "sat")];
        var sat = await bench.RunAsync(Ours(o, repoDsn), saturating, o.Frequency);
        rows.Add(sat with { Collector = "powa-cluster, saturated" });

        // One remote frozen: the other remote's servers must keep their schedule.
        string? frozen = null;
        if (o.FrozenSeconds > 0 && lab.Remotes.Count >= 2 && lab.Remotes[1] is LocalPostgres victim)
            frozen = await bench.FrozenRemoteAsync(Ours(o, repoDsn), victim, TimeSpan.FromSeconds(o.FrozenSeconds));

        Print(rows, limits, pool, limit, sat, frozen, notes, o);
        return 0;
    }

    static Func<Task<IDemoCollector>> Ours(LabOptions o, NpgsqlConnectionStringBuilder repo) =>
        () => Task.FromResult(OurCollector.Start(repo, o.PoolSize ?? new Collector.Configuration.CollectorSettings().WriterPoolSize, o.Debug));

    /// <summary>../shared beside the checkout, found from the lab's build output (src/PowaCluster.Lab/bin/Release/net10.0).</summary>
    static string FindShared()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, "..", "shared", "vendor")))
                return Path.GetRelativePath(AppContext.BaseDirectory, Path.Combine(dir.FullName, "..", "shared"));
        return Path.Combine("..", "shared");
    }

    static void Say(string m) => Console.WriteLine($"bench: {m}");

    static void Print(List<BenchRow> rows, Dictionary<int, double> limits, int pool, double limit, BenchRow sat, string? frozen,
        List<string> notes, LabOptions o)
    {
        Console.WriteLine();
        Console.WriteLine($"## powa-lab bench: steady-state window {o.Seconds} s after {o.Warmup} s of warm-up, each collector started fresh");
        Console.WriteLine();
        Console.WriteLine("| collector | servers at frequency | snapshots (due) | interval error p50 / p99 | CPU per snapshot | CPU % of a core | resident memory | threads | repository connections |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Collector} | {r.Servers} at {r.Frequency} s | {r.Snapshots} ({r.Due}) | " +
                              (double.IsNaN(r.ErrP50) ? "- | " : $"{r.ErrP50 * 100:F1} % / {r.ErrP99 * 100:F1} % | ") +
                              (r.Snapshots > 0 ? $"{r.CpuMsPerSnapshot:F2} ms" : "-") + $" | {r.CpuPercent:F2} % | " +
                              $"{r.RssBytes / 1048576.0:F0} MB | {r.Threads} | {r.RepoConnections} |");
        Console.WriteLine();
        Console.WriteLine("repository's own limit (binary COPY in + powa_take_snapshot back to back, no collector): " +
                          string.Join(", ", limits.Select(kv => $"{kv.Value:F1}/s on {kv.Key} connection(s)")));
        Console.WriteLine($"saturation: {sat.Servers} servers at {sat.Frequency} s ask {sat.Servers / (double)sat.Frequency:F1}/s; " +
                          $"powa-cluster (pool {pool}) stored {sat.PerSecond:F1}/s = {sat.PerSecond / limit * 100:F0} % of the repository's limit on {pool} connections " +
                          $"({sat.PerSecond / limits.Values.Max() * 100:F0} % of its best)");
        if (frozen is not null) Console.WriteLine(frozen);
        foreach (var n in notes) Console.WriteLine(n);
    }

    /// <summary>The runs' shared set-up: the lab, the servers, and a workload on the remotes.</summary>
    sealed class Bench(PowaLab lab, NpgsqlConnection repo, NpgsqlConnectionStringBuilder repoDsn, LabOptions o, CancellationToken stop)
    {
        public IReadOnlyList<int> AllServers { get; set; } = [];
        readonly HashSet<IPostgresInstance> _frozen = [];

        /// <summary>Every 200 ms a round of statements on each remote that is not frozen, so that every datasource has rows.</summary>
        public IDisposable StartWorkload()
        {
            var cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
            _ = Task.Run(async () =>
            {
                var conns = new Dictionary<IPostgresInstance, NpgsqlConnection>();
                while (!cts.IsCancellationRequested)
                {
                    foreach (var r in lab.Remotes)
                    {
                        lock (_frozen) if (_frozen.Contains(r)) continue;
                        try
                        {
                            if (!conns.TryGetValue(r, out var c))
                            {
                                c = new NpgsqlConnection(r.ConnectionString(PowaLab.Database).ConnectionString);
                                await c.OpenAsync(cts.Token);
                                conns[r] = c;
                            }
                            await PowaLab.WorkAsync(c);
                        }
                        catch (Exception) { if (conns.Remove(r, out var dead)) await dead.DisposeAsync(); }
                    }
                    await Task.Delay(200, cts.Token).ContinueWith(_ => { });
                }
                foreach (var c in conns.Values) await c.DisposeAsync();
            });
            return cts;
        }

        public IReadOnlyList<(int, NpgsqlConnectionStringBuilder)> ServerDsns(IReadOnlyList<int> ids) =>
            ids.Select((id, i) =>
            {
                var remote = lab.Remotes[i % lab.Remotes.Count];
                return (id, remote.ConnectionString(PowaLab.Database, i / lab.Remotes.Count + 1));
            }).ToList();

        /// <summary>The first n registered servers active at the frequency, the others deactivated (frequency -1).</summary>
        async Task ActivateAsync(int n, int frequency)
        {
            await using var cmd = new NpgsqlCommand(
                "UPDATE powa_servers SET frequency = CASE WHEN id = ANY($1) THEN $2 ELSE -1 END WHERE id > 0", repo)
                { Parameters = { new() { Value = AllServers.Take(n).ToArray() }, new() { Value = frequency } } };
            await cmd.ExecuteNonQueryAsync();
        }

        public Task<BenchRow> RunAsync(Func<Task<IDemoCollector>> start, int servers, int frequency) =>
            RunAsync(start, servers, frequency, TimeSpan.FromSeconds(o.Warmup), TimeSpan.FromSeconds(o.Seconds ?? 60));

        public async Task<BenchRow> RunAsync(Func<Task<IDemoCollector>> start, int servers, int frequency, TimeSpan warmup, TimeSpan window)
        {
            if (AllServers.Count > 0) await ActivateAsync(servers, frequency);
            await using var collector = await start();
            Say($"{collector.Name}: {servers} servers at {frequency} s, {warmup.TotalSeconds:F0} s of warm-up then {window.TotalSeconds:F0} s measured");
            await WaitAsync(warmup, collector);
            var from = await SnapshotLog.NowAsync(repo);
            var cpu0 = ProcessProbe.Cpu(collector.Pid);
            var sw = Stopwatch.StartNew();
            long rss = 0;
            int threads = 0, conns = 0;
            while (sw.Elapsed < window)
            {
                var (r, t) = ProcessProbe.Memory(collector.Pid);
                rss = Math.Max(rss, r);
                threads = Math.Max(threads, t);
                conns = Math.Max(conns, await SnapshotLog.CollectorConnectionsAsync(repo));
                await WaitAsync(TimeSpan.FromMilliseconds(500), collector);
            }
            var cpu = ProcessProbe.Cpu(collector.Pid) - cpu0;
            var seconds = sw.Elapsed.TotalSeconds;
            var to = from + sw.Elapsed;
            await collector.StopAsync();
            var times = await SnapshotLog.TimesAsync(repo, from, to);
            var snapshots = times.Values.Sum(t => t.Count);
            var errors = SnapshotLog.IntervalErrors(times, TimeSpan.FromSeconds(frequency));
            return new BenchRow(collector.Name, servers, frequency, snapshots, (int)(servers * seconds / frequency),
                SnapshotLog.Percentile(errors, 0.5), SnapshotLog.Percentile(errors, 0.99),
                snapshots == 0 ? 0 : cpu.TotalMilliseconds / snapshots, cpu.TotalSeconds / seconds * 100, rss, threads, conns, seconds);
        }

        /// <summary>One remote frozen (SIGSTOP) for a while: how many snapshots the other remote's servers got, against their schedule.</summary>
        public async Task<string> FrozenRemoteAsync(Func<Task<IDemoCollector>> start, LocalPostgres victim, TimeSpan frozenFor)
        {
            await ActivateAsync(o.Servers, o.Frequency);
            var healthy = AllServers.Take(o.Servers).Where((_, i) => lab.Remotes[i % lab.Remotes.Count] != victim).ToList();
            await using var collector = await start();
            Say($"{collector.Name}: {o.Servers} servers at {o.Frequency} s; {victim.Name} frozen for {frozenFor.TotalSeconds:F0} s after {o.Warmup} s");
            await WaitAsync(TimeSpan.FromSeconds(o.Warmup), collector);
            var from = await SnapshotLog.NowAsync(repo);
            lock (_frozen) _frozen.Add(victim);
            victim.Freeze();
            try { await WaitAsync(frozenFor, collector); }
            finally
            {
                victim.Thaw();
                lock (_frozen) _frozen.Remove(victim);
            }
            var to = from + frozenFor;
            var thawed = await SnapshotLog.NowAsync(repo);
            await WaitAsync(TimeSpan.FromSeconds(Math.Max(15, o.Frequency * 3)), collector);
            await collector.StopAsync();
            var times = await SnapshotLog.TimesAsync(repo, from, to);
            var got = healthy.Sum(id => times.TryGetValue(id, out var t) ? t.Count : 0);
            var due = (int)(healthy.Count * frozenFor.TotalSeconds / o.Frequency);
            var after = await SnapshotLog.TimesAsync(repo, thawed, DateTime.UtcNow.AddHours(1));
            var back = AllServers.Take(o.Servers).Except(healthy).Count(id => after.ContainsKey(id));
            return $"frozen remote: {victim.Name} stopped (SIGSTOP of its postmaster and backends) for {frozenFor.TotalSeconds:F0} s: " +
                   $"the {healthy.Count} servers of the other remote got {got} snapshots of {due} due ({got * 100.0 / Math.Max(1, due):F1} %); " +
                   $"{back} of the {o.Servers - healthy.Count} servers of the frozen one snapshotted again within {Math.Max(15, o.Frequency * 3)} s of the thaw";
        }

        async Task WaitAsync(TimeSpan t, IDemoCollector collector)
        {
            await Task.Delay(t, stop).ContinueWith(_ => { });
            stop.ThrowIfCancellationRequested();
            if (collector.ExitCode is { } code) throw new StartupException($"{collector.Name} exited with code {code}");
        }
    }
}
