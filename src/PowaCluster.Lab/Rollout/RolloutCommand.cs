using System.Diagnostics;
using Npgsql;
using PowaCluster.Host.Cli;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Bench;
using PowaCluster.Lab.Demo;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Rollout;

/// <summary>
/// powa-lab rollout: a cluster of the build of --from (a git ref, built into a scratch directory; this build
/// without it) replaced node by node with this build, as a StatefulSet's rolling update does (highest ordinal
/// first, the next one once the restarted node is ready plus one interval), measured from the repository: per
/// server the intervals lost and the doubles in the roll, the longest gap, where the singletons went, and the
/// nodes' errors about messages they could not read.
/// </summary>
public static class RolloutCommand
{
    public static async Task<int> RunAsync(LabOptions o)
    {
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        var freq = TimeSpan.FromSeconds(o.Frequency);
        var from = o.From is null ? null : await FromBuild.BuildAsync(o.From);
        Say(from is null ? "rolling this build onto itself (no --from)" : $"rolling from {o.From} ({from.Version}, built in {from.Directory}) to this build");

        var lab = await Scale.ScaleCommand.StartLabAsync(o.Servers, release: null);
        await using var _ = lab;
        var ids = await lab.RegisterManyAsync(o.Servers, o.Frequency, "rollout");
        var repoDsn = lab.Repository.ConnectionString(PowaLab.Database);
        var (settings, _) = SettingsLoader.Load(o.ToRun(repoDsn.ConnectionString), CollectorHost.CreateBuilder().Configuration);
        var logDir = Directory.CreateTempSubdirectory("powa-rollout-").FullName;
        Say($"{ids.Count} servers at {o.Frequency} s on {lab.Remotes.Count} remote instances; {o.Nodes} nodes (logs in {logDir})");

        await using var nodes = ClusterNodes.Start(repoDsn, o.Nodes, settings.WriterPoolSize, settings.Debug, logDirectory: logDir,
            buildDirectory: from?.Directory);
        await nodes.WaitReadyAsync(TimeSpan.FromSeconds(120));
        // Every server collected before the roll starts, then two intervals of steady state.
        await using var monitor = new NpgsqlConnection(repoDsn.ConnectionString);
        await monitor.OpenAsync(stop.Token);
        var started = await SnapshotLog.NowAsync(monitor);
        await WaitAsync(async () => (await SnapshotLog.TimesAsync(monitor, started, DateTime.MaxValue)).Count == ids.Count,
            TimeSpan.FromSeconds(60) + 3 * freq, "every server's first snapshot", stop.Token);
        await Task.Delay(2 * freq, stop.Token);

        var rollFrom = await SnapshotLog.NowAsync(monitor);
        var repository = (LocalPostgres)lab.Repository;
        if (o.Outage)
        {
            Say("the repository stops");
            await repository.StopAsync();
        }
        var rolled = Stopwatch.StartNew();
        // Highest ordinal first, as a StatefulSet does.
        foreach (var old in nodes.Nodes.OrderByDescending(n => n.Index).ToList())
        {
            var sw = Stopwatch.StartNew();
            var code = await nodes.TerminateAsync(old, TimeSpan.FromSeconds(60));
            var exited = sw.Elapsed;
            var log = Path.Combine(logDir, $"node{old.Index}-new.log");
            var now = nodes.Restart(old, buildDirectory: null, log);
            // During an outage no node is ready (/ready needs the repository): an Up member is what k8s/rollout.sh
            // --during-outage waits for, its container running.
            var restarts = nodes.Restarts;
            var ready = await ReadyOrRestartedAsync(nodes, now, TimeSpan.FromSeconds(120), log, stop.Token, upIsEnough: o.Outage);
            restarts = nodes.Restarts - restarts;
            Say($"{now.Name}: SIGTERM, exited {(code is null ? "only to SIGKILL" : $"with {code}")} in {exited.TotalSeconds:F1} s; this build " +
                (ready ? $"{(o.Outage ? "an Up member" : "ready")} {sw.Elapsed.TotalSeconds:F1} s after the SIGTERM" : "neither ready nor Up after 120 s") +
                (restarts > 0 ? $", after it exited and was started again {restarts} times" : ""));
            await Task.Delay(freq, stop.Token);
        }
        if (o.Outage)
        {
            Say($"the repository starts again, {rolled.Elapsed.TotalSeconds:F0} s after it stopped");
            await repository.StartAgainAsync();
            // The stop (fast mode) ended the lab's own session too.
            await monitor.CloseAsync();
            await monitor.OpenAsync(stop.Token);
        }
        await WaitReadyRestartingAsync(nodes, TimeSpan.FromSeconds(180), logDir, stop.Token);
        var rollTo = await SnapshotLog.NowAsync(monitor);
        // What the roll left to store (queues, spools) lands, with the time it was taken: a server's snapshots are
        // stored in order, so once one taken after the window is stored, the window is complete (or lost).
        var settle = TimeSpan.FromSeconds(Math.Max(o.Outage ? 900 : 600, 10 * o.Frequency));
        Say($"rolled in {rolled.Elapsed.TotalSeconds:F0} s; waiting (at most {settle.TotalSeconds:F0} s) for every server's snapshot taken after the roll to be stored");
        var settling = Stopwatch.StartNew();
        HashSet<int> landed;
        while ((landed = await SnapshotLog.LandedAfterAsync(monitor, ids, rollTo + freq)).Count < ids.Count && settling.Elapsed < settle)
            await Task.Delay(TimeSpan.FromSeconds(5), stop.Token);
        Say($"{landed.Count} of {ids.Count} servers have a snapshot taken after the roll stored, {settling.Elapsed.TotalSeconds:F0} s after it" +
            (landed.Count < ids.Count ? ": the others' backlog is still on its way (not counted below)" : ""));

        var times = await SnapshotLog.TimesAsync(monitor, rollFrom - freq, rollTo + freq);
        var figures = RolloutFigures.From(ids, landed, times, rollFrom - freq, rollTo + freq, freq);
        var singletons = SingletonMoves.Read(logDir);
        var unreadable = SingletonMoves.Unreadable(logDir);
        Console.WriteLine();
        Console.WriteLine(figures.Table());
        Console.WriteLine($"rollout: singletons: fleet coordinator on {singletons.Fleet.Count} node processes in turn ({string.Join(" -> ", singletons.Fleet)}), " +
                          $"shard coordinator on {singletons.Shards.Count} ({string.Join(" -> ", singletons.Shards)}): moved {singletons.Moves} times in the roll");
        Console.WriteLine($"rollout: log lines about messages a node could not read: {unreadable}");
        var ok = figures.Landed == figures.Servers && figures.Lost == 0 && figures.Doubles == 0 && figures.LongestGap <= 1.5 * o.Frequency && unreadable == 0 && singletons.Moves <= 1;
        Console.WriteLine($"rollout: {(ok ? "PASS" : "FAIL")} (goals: every server landed, 0 lost, 0 doubles, longest gap <= {1.5 * o.Frequency:F0} s, singletons moved at most once, no unreadable message)");
        return ok ? 0 : 1;
    }

    /// <summary>Ready within the timeout; a process that exits meanwhile is started again after 10 s (Restart=on-failure).</summary>
    /// <param name="upIsEnough">an Up member that is not ready (the repository is down) will do</param>
    static async Task<bool> ReadyOrRestartedAsync(ClusterNodes nodes, ClusterNodes.Node n, TimeSpan timeout, string log, CancellationToken ct,
        bool upIsEnough = false)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout && !ct.IsCancellationRequested)
        {
            n = nodes.Nodes.Single(x => x.Index == n.Index);
            if (n.ExitCode is not null)
            {
                await Task.Delay(TimeSpan.FromSeconds(10), ct);
                n = nodes.Restart(n, null, log + $".{(int)sw.Elapsed.TotalSeconds}");
                continue;
            }
            var (status, body) = await ClusterNodes.GetAsync(n);
            if (status == 200 || upIsEnough && body.Contains("member: Up", StringComparison.Ordinal)) return true;
            await Task.Delay(500, ct);
        }
        return false;
    }

    static async Task WaitReadyRestartingAsync(ClusterNodes nodes, TimeSpan timeout, string logDir, CancellationToken ct)
    {
        foreach (var n in nodes.Nodes.ToList())
            if (!await ReadyOrRestartedAsync(nodes, n, timeout, Path.Combine(logDir, $"node{n.Index}-new.log"), ct))
                throw new TimeoutException($"{n.Name} not ready after {timeout.TotalSeconds:F0} s");
    }

    static async Task WaitAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        while (!await condition())
        {
            if (sw.Elapsed > timeout) throw new TimeoutException($"rollout: no {what} after {timeout.TotalSeconds:F0} s");
            await Task.Delay(1000, ct);
        }
    }

    static void Say(string m) => Console.WriteLine($"rollout: {m}");
}
