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
public static partial class FaultsCommand
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
        if (await measure.ResumedAsync(ids, LabClock.Utc.AddSeconds(-300), TimeSpan.FromSeconds(90)) is null)
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
        var stableSince = LabClock.Utc;
        var deadline = LabClock.Utc.AddMinutes(3);
        while (LabClock.Utc < deadline)
        {
            try
            {
                var statuses = await Host.Cli.ControlClient.ClusterStatusAsync(monitor, repo, ids, TimeSpan.FromSeconds(3));
                var spread = string.Join(", ", statuses.Values.GroupBy(v => v.Node).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"));
                if (spread != last) { last = spread; stableSince = LabClock.Utc; }
                else if (statuses.Values.Select(v => v.Node).Distinct().Count() == nodes.Nodes.Count && LabClock.Utc - stableSince > TimeSpan.FromSeconds(20))
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
        var from = LabClock.Utc;
        await begin();
        await Task.Delay(hold);
        await end();
        var ended = LabClock.Utc;
        var resumed = await c.Measure.ResumedAsync(c.Servers, ended, c.Frequency * 3 + TimeSpan.FromSeconds(60));
        await Task.Delay(c.Frequency);
        var to = LabClock.Utc;
        var (due, stored, longest, shortest) = await c.Measure.WindowAsync(servers, from, to, c.Frequency);
        return new FaultRow(name, alive?.Invoke() ?? c.Alive(), due, stored, longest, shortest, c.Measure.TakeStuck(), resumed,
            note is null ? "" : await note());
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
