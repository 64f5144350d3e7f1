using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Npgsql;
using PowaCluster.Lab.Embedded;
using PowaCluster.Host.Cli;
using PowaCluster.Lab;
using PowaCluster.Collector.Configuration;
using PowaCluster.Host.Startup;
using static PowaCluster.Lab.Demo.DemoReport;

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

        var release = cli.ArchivistRelease();
        Console.WriteLine($"demo: starting a throwaway repository and {cli.Remotes} remote PostgreSQL 15 instance(s) on loopback, " +
                          $"with {(release is null ? "Debian's archivist 4.1.4" : $"archivist {release}")}...");
        var perRemote = (cli.Servers + cli.Remotes - 1) / cli.Remotes;
        var factory = release is null ? null : LocalPostgres.PowaFactory(release);
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
        if (cli.SideBySide) return await SideBySide.RunAsync(cli, lab, repoDsn, settings, stop.Token);
        // The collector runs in a process of its own, as in production, so that its CPU time is its own.
        // The reference: 1.3.1 on PoWA 5, Debian's 1.2.0 on PoWA 4 (ReferenceCollector.StartForAsync).
        await using var collector = !cli.Reference ? OurCollector.Start(repoDsn, settings.WriterPoolSize, settings.Debug)
            : await ReferenceCollector.StartForAsync(repoDsn, cli.Powa, "--reference");
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
                await Task.Delay(200, stop.Token).ContinueWith(_ => { }, CancellationToken.None); // cancelled: go on
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
        Console.WriteLine($"demo summary ({collector.Name}, powa {release ?? "4.1.4"}): {rows.Count} servers at frequency {cli.Frequency} s for {elapsed.TotalSeconds:F0} s: " +
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
        // --prometheus: a real Prometheus scrapes every node; its report when the demo ends.
        await using var prometheus = cli.Prometheus
            ? await Embedded.PrometheusServer.StartAsync(nodes.Nodes.Select(n => $"127.0.0.1:{n.HttpPort}"), TimeSpan.FromSeconds(5))
            : null;
        await using var monitor = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repoDsn.ConnectionString)
        { ApplicationName = "powa-cluster demo monitor" }.ConnectionString);
        await monitor.OpenAsync(stop);
        var sw = Stopwatch.StartNew();
        var every = TimeSpan.FromSeconds(Math.Max(10, cli.Frequency * 2));
        while (!stop.IsCancellationRequested && (cli.Seconds is null || sw.Elapsed < TimeSpan.FromSeconds(cli.Seconds.Value)))
        {
            await Task.Delay(every, stop).ContinueWith(_ => { }, CancellationToken.None); // cancelled: go on
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
        if (prometheus is not null) return await PrometheusReport.PrintAsync(prometheus, nodes.Nodes) == 0 ? 0 : 1;
        return 0;
    }
}
