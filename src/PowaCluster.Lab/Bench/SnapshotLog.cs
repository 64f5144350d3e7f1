using Npgsql;

namespace PowaCluster.Lab.Bench;

/// <summary>
/// What landed in the repository, read back: each snapshot leaves one powa_stat_bgwriter row with the
/// remote's timestamp (current, or aggregated into the history's records).
/// </summary>
public static class SnapshotLog
{
    public static async Task<Dictionary<int, List<DateTime>>> TimesAsync(NpgsqlConnection repo, DateTime fromUtc, DateTime toUtc)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT srvid, ts FROM (
              SELECT srvid, (record).ts AS ts FROM powa_stat_bgwriter_history_current
              UNION ALL
              SELECT srvid, (unnest(records)).ts FROM powa_stat_bgwriter_history) s
            WHERE ts >= $1 AND ts < $2 ORDER BY srvid, ts
            """, repo) { Parameters = { new() { Value = fromUtc }, new() { Value = toUtc } } };
        await using var r = await cmd.ExecuteReaderAsync();
        var times = new Dictionary<int, List<DateTime>>();
        while (await r.ReadAsync())
        {
            var id = r.GetInt32(0);
            if (!times.TryGetValue(id, out var list)) times[id] = list = [];
            list.Add(r.GetDateTime(1));
        }
        return times;
    }

    /// <summary>
    /// Snapshots stored so far, whenever taken: two readings bracket what a window stored. Snapshots taken in a
    /// window may be stored after it (a saturated collector's queue, stored while it stops): counted by their
    /// times, those would count as the window's throughput.
    /// </summary>
    public static async Task<long> StoredAsync(NpgsqlConnection repo)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT (SELECT count(*) FROM powa_stat_bgwriter_history_current)
                 + (SELECT coalesce(sum(cardinality(records)), 0) FROM powa_stat_bgwriter_history)
            """, repo);
        return Convert.ToInt64(await cmd.ExecuteScalarAsync());
    }

    /// <summary>Which of these servers have a snapshot taken after <paramref name="afterUtc"/> stored.</summary>
    public static async Task<HashSet<int>> LandedAfterAsync(NpgsqlConnection repo, IReadOnlyCollection<int> ids, DateTime afterUtc)
    {
        await using var cmd = new NpgsqlCommand("""
            SELECT DISTINCT srvid FROM (
              SELECT srvid, (record).ts AS ts FROM powa_stat_bgwriter_history_current
              UNION ALL
              SELECT srvid, (unnest(records)).ts FROM powa_stat_bgwriter_history) s
            WHERE ts > $1 AND srvid = ANY($2)
            """, repo) { Parameters = { new() { Value = afterUtc }, new() { Value = ids.ToArray() } } };
        await using var r = await cmd.ExecuteReaderAsync();
        var landed = new HashSet<int>();
        while (await r.ReadAsync()) landed.Add(r.GetInt32(0));
        return landed;
    }

    /// <summary>Every gap between two snapshots of one server, as |gap - frequency| / frequency.</summary>
    public static List<double> IntervalErrors(Dictionary<int, List<DateTime>> times, TimeSpan frequency) =>
        times.Values.SelectMany(t => t.Zip(t.Skip(1), (a, b) => Math.Abs((b - a - frequency).TotalSeconds) / frequency.TotalSeconds))
            .OrderBy(x => x).ToList();

    public static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];

    public static async Task<int> CollectorConnectionsAsync(NpgsqlConnection repo)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'PoWA collector%'", repo);
        return Convert.ToInt32(await cmd.ExecuteScalarAsync());
    }

    /// <summary>Collector sessions idle in transaction for more than 5 s on this instance: none should ever be.</summary>
    public static async Task<int> StuckInTransactionAsync(NpgsqlConnection c, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'PoWA collector%' " +
            "AND state LIKE 'idle in transaction%' AND now() - state_change > interval '5 s'", c);
        return Convert.ToInt32(await cmd.ExecuteScalarAsync(ct));
    }

    public static async Task<DateTime> NowAsync(NpgsqlConnection repo)
    {
        await using var cmd = new NpgsqlCommand("SELECT now()", repo);
        return (DateTime)(await cmd.ExecuteScalarAsync())!;
    }
}
