using System.Diagnostics;
using Npgsql;
using PowaCluster.Collector.Control;
using PowaCluster.Host.Cli;

namespace PowaCluster.Lab.Demo;

/// <summary>What the failover scenario measured, from the repository's own tables and the cluster's status.</summary>
public sealed record FailoverReport(
    int Servers,
    int Frequency,
    TimeSpan StableAfter,
    IReadOnlyDictionary<string, int> ServersPerNode,
    string Killed,
    int KilledServers,
    int TakenOver,
    TimeSpan MaxTakeover,
    string Terminated,
    int? TerminatedExitCode,
    TimeSpan ShutdownTook,
    TimeSpan MaxGapAfterSigterm,
    string MaxGapWhere,
    TimeSpan MinGap,
    IReadOnlyList<string> Errors,
    int StuckInTransaction,
    IReadOnlyDictionary<string, int> ServersPerNodeAtEnd)
{
    public TimeSpan TakeoverBound => StableAfter + TimeSpan.FromSeconds(Frequency) + TimeSpan.FromSeconds(10);
    public TimeSpan GapBound => TimeSpan.FromSeconds(2 * Frequency);

    public string Summary() =>
        $"failover summary: {ServersPerNode.Count} nodes, {Servers} servers at frequency {Frequency} s, stable-after {StableAfter.TotalSeconds:F0} s; " +
        $"servers per node {string.Join(" / ", ServersPerNode.Values)}; " +
        $"SIGKILL of {Killed} ({KilledServers} servers): {TakenOver} taken over, slowest new snapshot {MaxTakeover.TotalSeconds:F1} s after the kill " +
        $"(bound {TakeoverBound.TotalSeconds:F0} s); SIGTERM of {Terminated}: exit code {TerminatedExitCode?.ToString() ?? "none (killed)"} " +
        $"after {ShutdownTook.TotalSeconds:F1} s, longest gap between two snapshots of a server {MaxGapAfterSigterm.TotalSeconds:F1} s (bound {GapBound.TotalSeconds:F0} s: {MaxGapWhere}); " +
        $"shortest gap over the whole run {MinGap.TotalSeconds:F1} s; errors in powa_snapshot_metas {Errors.Count}; " +
        $"sessions idle in transaction for more than 5 s {StuckInTransaction}; at the end {string.Join(" / ", ServersPerNodeAtEnd.Select(kv => $"{kv.Key}: {kv.Value}"))}";
}

/// <summary>
/// Several nodes, then SIGKILL of the oldest (it hosts the singletons), then SIGTERM of the next oldest (the
/// singletons have moved to it), measured from the repository: when each server's snapshots happened
/// (powa_stat_bgwriter_history_current has one row per snapshot), the errors in powa_snapshot_metas, and
/// the sessions the collectors left open on the repository and the remotes.
/// </summary>
public sealed class FailoverScenario(NpgsqlConnectionStringBuilder repository, IReadOnlyList<NpgsqlConnectionStringBuilder> remotes,
    ClusterNodes cluster, IReadOnlyList<int> srvids, int frequency, TimeSpan stableAfter, Action<string> say)
{
    readonly TimeSpan _freq = TimeSpan.FromSeconds(frequency);
    int _stuck;

    public async Task<FailoverReport> RunAsync(CancellationToken ct)
    {
        await using var monitor = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(repository.ConnectionString)
        { ApplicationName = "powa-cluster failover monitor" }.ConnectionString);
        await monitor.OpenAsync(ct);
        var everyone = cluster.Nodes.Select(n => n.Address).ToHashSet();

        say("failover: waiting until every server runs, spread over every node, with two snapshots or more");
        var before = await SettledAsync(monitor, everyone, TimeSpan.FromSeconds(120), ct);
        var perNode = PerNode(before, everyone);
        say($"failover: servers per node: {string.Join(", ", perNode.Select(kv => $"{kv.Key} {kv.Value}"))}");

        // SIGKILL of the oldest node: the shard coordinator and the FleetCoordinator go with it.
        var victim = cluster.Nodes[0];
        var victimServers = before.Where(kv => kv.Value.Node == victim.Address).Select(kv => kv.Key).ToList();
        var killedAt = LabClock.Utc;
        cluster.Kill(victim);
        say($"failover: SIGKILL of {victim.Name}, which held {victimServers.Count} servers");
        var takeover = new Dictionary<int, TimeSpan>();
        var sw = Stopwatch.StartNew();
        var bound = stableAfter + _freq + TimeSpan.FromSeconds(10);
        while (takeover.Count < victimServers.Count && sw.Elapsed < bound + TimeSpan.FromSeconds(60))
        {
            var times = await SnapshotTimesAsync(monitor, ct);
            foreach (var id in victimServers.Where(id => !takeover.ContainsKey(id)))
                if (times.TryGetValue(id, out var t) && t.FirstOrDefault(x => x > killedAt) is var first && first != default)
                    takeover[id] = first - killedAt;
            await SampleStuckAsync(ct);
            await Task.Delay(500, ct);
        }
        var maxTakeover = takeover.Count == 0 ? sw.Elapsed : takeover.Values.Max();
        say($"failover: {takeover.Count} of {victimServers.Count} servers snapshotted again, the last {maxTakeover.TotalSeconds:F1} s after the kill");

        // SIGTERM of the next oldest, which now hosts the singletons.
        var survivors = everyone.Where(a => a != victim.Address).ToHashSet();
        await SettledAsync(monitor, survivors, TimeSpan.FromSeconds(120), ct, since: killedAt);
        var leaving = cluster.Nodes[1];
        var termAt = LabClock.Utc;
        say($"failover: SIGTERM of {leaving.Name}");
        var exit = await cluster.TerminateAsync(leaving, TimeSpan.FromSeconds(120));
        var shutdownTook = LabClock.Utc - termAt;
        say($"failover: {leaving.Name} exited with code {exit?.ToString() ?? "none (killed after 120 s)"} after {shutdownTook.TotalSeconds:F1} s");
        var watchUntil = LabClock.Utc + _freq * 3;
        while (LabClock.Utc < watchUntil)
        {
            await SampleStuckAsync(ct);
            await Task.Delay(500, ct);
        }
        var last = cluster.Nodes[^1].Address;
        var end = await SettledAsync(monitor, new HashSet<string> { last }, TimeSpan.FromSeconds(60), ct, minSnapshots: 0);

        var all = await SnapshotTimesAsync(monitor, ct);
        var maxGap = TimeSpan.Zero;
        var minGap = TimeSpan.MaxValue;
        var where = "";
        foreach (var id in srvids)
        {
            if (!all.TryGetValue(id, out var t) || t.Count == 0) { maxGap = TimeSpan.MaxValue; continue; }
            for (var i = 1; i < t.Count; i++)
            {
                var gap = t[i] - t[i - 1];
                if (gap < minGap) minGap = gap;
                if (t[i] > termAt && gap > maxGap) (maxGap, where) = (gap, $"server {id}, {t[i - 1]:HH:mm:ss.f} to {t[i]:HH:mm:ss.f}, SIGTERM at {termAt:HH:mm:ss.f}");
            }
            // A server not snapshotted since: its gap is still open.
            if (LabClock.Utc - t[^1] > maxGap) (maxGap, where) = (LabClock.Utc - t[^1], $"server {id}, none since {t[^1]:HH:mm:ss.f}");
        }
        var errors = await ErrorsAsync(monitor, ct);
        return new FailoverReport(srvids.Count, frequency, stableAfter, perNode, victim.Name, victimServers.Count, takeover.Count,
            maxTakeover, leaving.Name, exit, shutdownTook, maxGap, where, minGap == TimeSpan.MaxValue ? TimeSpan.Zero : minGap, errors,
            _stuck, PerNode(end, [last]));
    }

    static Dictionary<string, int> PerNode(Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)> statuses, IEnumerable<string> nodes) =>
        nodes.OrderBy(n => n).ToDictionary(n => n, n => statuses.Values.Count(s => s.Node == n));

    /// <summary>
    /// Waits until every server is running on one of the given nodes, each of those nodes holds some, the
    /// distribution has not changed for longer than a rebalance round (10 s), and every server has
    /// minSnapshots snapshots (since the given time).
    /// </summary>
    async Task<Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)>> SettledAsync(NpgsqlConnection monitor, IReadOnlySet<string> nodes,
        TimeSpan timeout, CancellationToken ct, int minSnapshots = 2, DateTime? since = null)
    {
        var sw = Stopwatch.StartNew();
        string? previous = null;
        var sameSince = TimeSpan.Zero;
        var csb = new NpgsqlConnectionStringBuilder(monitor.ConnectionString);
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)> statuses;
            try { statuses = await ControlClient.ClusterStatusAsync(monitor, csb, srvids, TimeSpan.FromSeconds(3)); }
            catch (PowaCluster.Host.Startup.StartupException) { statuses = []; } // the coordinator is moving
            var times = await SnapshotTimesAsync(monitor, ct);
            var ok = statuses.Count == srvids.Count
                     && statuses.Values.All(s => s.Status == "running" && nodes.Contains(s.Node))
                     && nodes.All(n => statuses.Values.Any(s => s.Node == n))
                     && srvids.All(id => times.TryGetValue(id, out var t) && t.Count(x => x > (since ?? DateTime.MinValue)) >= minSnapshots);
            var shape = string.Join(",", statuses.OrderBy(kv => kv.Key).Select(kv => kv.Value.Node));
            if (!ok || shape != previous) sameSince = sw.Elapsed;
            else if (sw.Elapsed - sameSince > TimeSpan.FromSeconds(12)) return statuses;
            previous = ok ? shape : null;
            if (sw.Elapsed > timeout)
                throw new TimeoutException($"the cluster did not settle within {timeout.TotalSeconds:F0} s: " +
                    $"{statuses.Values.Count(s => s.Status == "running")} of {srvids.Count} servers running on " +
                    string.Join(", ", statuses.Values.GroupBy(s => s.Node).Select(g => $"{g.Key} ({g.Count()})")));
            await SampleStuckAsync(ct);
            await Task.Delay(TimeSpan.FromSeconds(3), ct);
        }
    }

    async Task<Dictionary<int, List<DateTime>>> SnapshotTimesAsync(NpgsqlConnection monitor, CancellationToken ct)
    {
        var times = new Dictionary<int, List<DateTime>>();
        await using var cmd = new NpgsqlCommand(
            "SELECT srvid, (record).ts FROM powa_stat_bgwriter_history_current WHERE srvid = ANY($1) ORDER BY 1, 2", monitor)
        { Parameters = { new() { Value = srvids.ToArray() } } };
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
        {
            var id = r.GetInt32(0);
            if (!times.TryGetValue(id, out var list)) times[id] = list = [];
            list.Add(r.GetFieldValue<DateTime>(1).ToUniversalTime());
        }
        return times;
    }

    static async Task<List<string>> ErrorsAsync(NpgsqlConnection monitor, CancellationToken ct)
    {
        var errors = new List<string>();
        await using var cmd = new NpgsqlCommand(
            "SELECT srvid, unnest(errors) FROM powa_snapshot_metas WHERE srvid > 0 AND errors IS NOT NULL ORDER BY 1", monitor);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) errors.Add($"server {r.GetInt32(0)}: {r.GetString(1)}");
        return errors;
    }

    /// <summary>Collector sessions idle in transaction for more than 5 s, on the repository and the remotes: none should ever be.</summary>
    async Task SampleStuckAsync(CancellationToken ct)
    {
        var count = 0;
        foreach (var csb in remotes.Prepend(repository))
        {
            await using var c = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(csb.ConnectionString)
            { Database = "postgres", ApplicationName = "powa-cluster failover monitor" }.ConnectionString);
            await c.OpenAsync(ct);
            count += await Bench.SnapshotLog.StuckInTransactionAsync(c, ct);
        }
        _stuck = Math.Max(_stuck, count);
    }
}
