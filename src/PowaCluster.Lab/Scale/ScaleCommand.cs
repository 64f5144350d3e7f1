using System.Diagnostics;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Bench;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Scale;

/// <summary>
/// powa-lab scale: many servers on a cluster of nodes started together, from a cold start, measured from
/// outside (the nodes' /ready, /proc and logs) and from the repository (each snapshot's remote timestamp).
/// Optionally a SIGKILL of the oldest node afterwards, and how long its servers take to resume.
/// </summary>
public static class ScaleCommand
{
    /// <summary>Servers per remote instance: PostgreSQL listens on 64 addresses at most (MAXLISTEN).</summary>
    const int PerInstance = LocalPostgres.MaxLoopbackAddresses;
    static readonly TimeSpan SampleEvery = TimeSpan.FromSeconds(5);

    public static async Task<int> RunAsync(LabOptions o)
    {
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        var release = o.ArchivistRelease();
        Say($"starting a throwaway repository and {Remotes(o.Servers)} remote instances ({PerInstance} loopback addresses each, archivist {release ?? "4.1.4"})");
        var lab = await StartLabAsync(o.Servers, release);
        await using var _ = lab;
        await lab.Repository.ExecAsync(PowaLab.Database, SrcTmpAutovacuum);
        // pg_stat_statements.track = all kept the ~700 statements of the extensions' installation scripts: a
        // server's statements are its workload's and the collector's from here on (about 50).
        foreach (var r in lab.Remotes) await r.ExecAsync(PowaLab.Database, "SELECT pg_stat_statements_reset()");
        var ids = await lab.RegisterManyAsync(o.Servers, o.Frequency, "scale");
        var repoDsn = lab.Repository.ConnectionString(PowaLab.Database);
        var (settings, _) = SettingsLoader.Load(o.ToRun(repoDsn.ConnectionString), CollectorHost.CreateBuilder().Configuration);
        var ports = lab.Remotes.Select(r => r.Port).ToHashSet();
        var logDir = Directory.CreateTempSubdirectory("powa-scale-").FullName;

        await using var monitor = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString)
        { ApplicationName = "powa-cluster scale monitor" }.ConnectionString);
        await monitor.OpenAsync(stop.Token);
        var t0 = await SnapshotLog.NowAsync(monitor);
        Say($"{ids.Count} servers at {o.Frequency} s registered; starting {o.Nodes} nodes together (logs in {logDir})");
        await using var nodes = ClusterNodes.Start(repoDsn, o.Nodes, settings.WriterPoolSize, settings.Debug, logDirectory: logDir);
        var watch = new ScaleWatch(nodes, ports, ids.Count);
        var sw = Stopwatch.StartNew();
        MachineCpu.Reading? cpuFrom = null;
        while (!stop.IsCancellationRequested && sw.Elapsed < TimeSpan.FromSeconds(o.Seconds!.Value))
        {
            await watch.SampleAsync(sw.Elapsed);
            // The machine's CPU over the steady part, after the first two intervals.
            if (cpuFrom is null && sw.Elapsed >= TimeSpan.FromSeconds(2 * o.Frequency)) cpuFrom = Cpu(lab, nodes);
            await Task.Delay(SampleEvery, stop.Token).ContinueWith(_ => { }, CancellationToken.None); // cancelled: go on
        }
        var cpuTo = Cpu(lab, nodes);
        var tEnd = await SnapshotLog.NowAsync(monitor);
        var freq = TimeSpan.FromSeconds(o.Frequency);
        var times = await SnapshotLog.TimesAsync(monitor, t0, tEnd);
        var fleet = FleetFigures.From(ids, times, t0, tEnd, freq);
        Console.WriteLine();
        Console.WriteLine(watch.NodeTable());
        Console.WriteLine(LogCounts.Table(nodes, since: null));
        Console.WriteLine(fleet.Summary(o.Nodes, watch));
        if (cpuFrom is not null) Console.WriteLine(MachineCpu.Split(cpuFrom, cpuTo));
        var (memory, memoryOk) = watch.Memory();
        Console.WriteLine(memory);
        var ok = fleet.Pass && watch.Pass && memoryOk;
        if (o.Kill && !stop.IsCancellationRequested) ok &= await KillAsync(o, nodes, watch, monitor, ids, settings, stop.Token);
        Console.WriteLine($"scale: {(ok ? "PASS" : "FAIL")}");
        return ok ? 0 : 1;
    }

    static int Remotes(int servers) => (servers + PerInstance - 1) / PerInstance;

    /// <summary>
    /// A repository and one remote instance per 60 servers (also powa-lab rollout's), of the archivist release
    /// given (Debian's 4.1.4 when null).
    /// </summary>
    public static async Task<PowaLab> StartLabAsync(int servers, string? release)
    {
        var remotes = Remotes(servers);
        var binDir = release is null ? null : LocalPostgres.PowaBinDir(release);
        // Seventeen instances share this machine's cores, where in production each remote has a host of its own:
        // pg_wait_sampling's sampler (every 10 ms by default, over every backend slot) would cost the lab most of
        // a core by itself. Sampled every 100 ms here; the data collected is the same kind.
        // The repository gets what README ("A large fleet: the repository") asks of one: autovacuum every 5 s.
        PostgresFactory factory = async (name, n) => await LocalPostgres.StartAsync((release is null ? "" : $"powa{release}-") + name, n, binDir: binDir,
            settings: name == "repository" ? ["autovacuum_naptime = 5s"]
                : ["pg_wait_sampling.profile_period = 100", "pg_wait_sampling.history_period = 100"]);
        try { return await PowaLab.StartAsync(remotes, Math.Min(PerInstance, (servers + remotes - 1) / remotes), factory); }
        catch (InvalidOperationException e) { throw new StartupException($"cannot start the throwaway PostgreSQL instances: {e.Message}"); }
    }

    /// <summary>SIGKILL of the oldest node (the singletons go with it); every server must resume within stable-after + frequency + 10 s.</summary>
    static async Task<bool> KillAsync(LabOptions o, ClusterNodes nodes, ScaleWatch watch, NpgsqlConnection monitor, IReadOnlyList<int> ids,
        CollectorSettings settings, CancellationToken ct)
    {
        var victim = nodes.Nodes[0];
        var freq = TimeSpan.FromSeconds(o.Frequency);
        var bound = settings.StableAfter + freq + TimeSpan.FromSeconds(10);
        var killedAt = await SnapshotLog.NowAsync(monitor);
        var marks = LogCounts.Marks(nodes);
        nodes.Kill(victim);
        Say($"SIGKILL of {victim.Name}, which held {watch.LastHeld(victim.Index)} servers; watching for {(bound + TimeSpan.FromSeconds(20)).TotalSeconds:F0} s");
        var sw = Stopwatch.StartNew();
        while (!ct.IsCancellationRequested && sw.Elapsed < bound + TimeSpan.FromSeconds(20))
        {
            await watch.SampleAsync(TimeSpan.FromSeconds(o.Seconds!.Value) + sw.Elapsed);
            await Task.Delay(SampleEvery, ct).ContinueWith(_ => { }, CancellationToken.None); // cancelled: go on
        }
        // Each server's first snapshot after the kill, by the time it was taken (its remote's ts): one waiting
        // in a queue for the repository is stored later with that time, so the stores are given a while to land.
        List<double> resumed = [];
        for (var wait = Stopwatch.StartNew(); ; await Task.Delay(SampleEvery, ct))
        {
            var times = await SnapshotLog.TimesAsync(monitor, killedAt, await SnapshotLog.NowAsync(monitor));
            resumed = ids.Select(id => times.TryGetValue(id, out var t) && t.Count > 0 ? (t[0] - killedAt).TotalSeconds : double.PositiveInfinity).ToList();
            if (resumed.All(double.IsFinite) || wait.Elapsed > TimeSpan.FromSeconds(120) || ct.IsCancellationRequested) break;
        }
        var late = resumed.Count(s => s > bound.TotalSeconds);
        Console.WriteLine(watch.NodeTable(since: TimeSpan.FromSeconds(o.Seconds!.Value)));
        Console.WriteLine(LogCounts.Table(nodes, since: marks));
        var (memory, memoryOk) = watch.Memory(since: TimeSpan.FromSeconds(o.Seconds!.Value));
        Console.WriteLine(memory);
        var survivorsDowned = nodes.Nodes.Count(n => n != victim && n.ExitCode is not null);
        Console.WriteLine($"scale kill -9: {victim.Name} killed; every server's first snapshot after the kill: latest " +
                          $"{(resumed.Max() is var m && double.IsInfinity(m) ? "never" : $"{m:F1} s")} (bound stable-after + frequency + 10 s = " +
                          $"{bound.TotalSeconds:F0} s), {late} servers later than the bound; surviving nodes downed {survivorsDowned}");
        return late == 0 && survivorsDowned == 0 && memoryOk;
    }

    /// <summary>README, "A large fleet: the repository": the *_src_tmp tables vacuumed as soon as 1,000 rows are dead.</summary>
    public const string SrcTmpAutovacuum = """
        DO $$
        DECLARE t regclass;
        BEGIN
          FOR t IN SELECT c.oid::regclass FROM pg_class c WHERE c.relname LIKE 'powa\_%\_src\_tmp' AND c.relkind = 'r' LOOP
            EXECUTE format('ALTER TABLE %s SET (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 0)', t);
          END LOOP;
        END $$
        """;

    static void Say(string m) => Console.WriteLine($"scale: {m}");

    static MachineCpu.Reading Cpu(PowaLab lab, ClusterNodes nodes) => MachineCpu.Read(
        new Dictionary<string, IReadOnlyList<int>>
        {
            ["repository"] = Postmaster(lab.Repository),
            ["remotes"] = lab.Remotes.SelectMany(Postmaster).ToList(),
        },
        new Dictionary<string, IReadOnlyList<int>> { ["collector nodes"] = nodes.Nodes.Select(n => n.Process.Pid).ToList() });

    static IReadOnlyList<int> Postmaster(IPostgresInstance pg) => pg is LocalPostgres l ? l.ProcessIds().Take(1).ToList() : [];
}
