using Npgsql;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Demo;

/// <summary>
/// What the demo reads back from a repository: per server, its snapshots and the rows of each datasource (with
/// those of the collector's own statements apart), printed as a table; the summaries the collectors are
/// compared on; what a collector left in the remotes' pg_stat_statements.
/// </summary>
static class DemoReport
{
    /// <summary>Where Row.Own counts a datasource's rows of the collector's own statements; -1: not counted.</summary>
    static int OwnIndex(string label) => label switch { "statements" => 0, "waits" => 1, "quals" => 2, _ => -1 };

    /// <summary>Rows of datasource i per snapshot over all servers; without those of the collectors' own statements unless withOwn.</summary>
    static double PerSnapshot(List<Row> rows, int i, string label, bool withOwn) =>
        rows.Sum(r => r.Counts[i] - (withOwn ? 0 : r.Own[OwnIndex(label)])) / (double)Math.Max(1, rows.Sum(r => r.Snapshots));

    /// <summary>
    /// What the collectors are compared on, per datasource: rows per snapshot (and for statements, waits and
    /// quals, without the collectors' own statements); catalogs, read once per server, per server.
    /// </summary>
    internal static Dictionary<string, double> Summarize(List<Row> rows, int powa)
    {
        var servers = Math.Max(1, rows.Count);
        var result = new Dictionary<string, double> { ["snapshots per server"] = rows.Sum(r => r.Snapshots) / (double)servers };
        foreach (var (d, i) in Datasources(powa).Select((d, i) => (d, i)))
        {
            if (d.Table.StartsWith("powa_catalog_"))
            {
                result[$"{d.Label} rows per server"] = rows.Sum(r => r.Counts[i]) / (double)servers;
                continue;
            }
            result[$"{d.Label} rows per snapshot"] = PerSnapshot(rows, i, d.Label, withOwn: true);
            if (OwnIndex(d.Label) >= 0)
                result[$"{d.Label} rows per snapshot, without the collectors' own statements"] = PerSnapshot(rows, i, d.Label, withOwn: false);
        }
        return result;
    }

    internal static async Task<int> CollectorConnectionsAsync(NpgsqlConnection monitor)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'PoWA collector%'", monitor);
        return Convert.ToInt32(await cmd.ExecuteScalarAsync());
    }

    /// <param name="Own">statements rows of the collector's own COPY statements, and wait_sampling and qualstats rows of a
    /// statement that is not the workload's (while the demo runs, the collector's): what the collectors leave in the remote's
    /// pg_stat_statements and pg_wait_sampling differs by design, the rest is what they are compared on</param>
    internal sealed record Row(int SrvId, string Alias, string Server, long Snapshots, long[] Counts, string[] Errors, long[] Own);

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

    internal static async Task<List<Row>> PrintAsync(NpgsqlConnection monitor, TimeSpan elapsed, int powa)
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
    internal static string DatasourceSummary(List<Row> rows, int powa)
    {
        return string.Join(", ", Datasources(powa).Select((d, i) =>
        {
            var text = $"{d.Label} {rows.Count(r => r.Counts[i] > 0)} ({PerSnapshot(rows, i, d.Label, withOwn: true):F1} rows per snapshot";
            var own = OwnIndex(d.Label);
            if (own >= 0)
                text += $"; {PerSnapshot(rows, i, d.Label, withOwn: false):F1} without the collector's own " +
                        (own == 0 ? "COPY statements" : "statements");
            return text + ")";
        }));
    }

    /// <summary>
    /// What the collector left in each remote's pg_stat_statements: its entries, and how many are a collector's
    /// COPY statements (PostgreSQL 15 keys a COPY by its text: a literal in it makes an entry per snapshot).
    /// </summary>
    internal static async Task<string> RemoteStatementsAsync(PowaLab lab)
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
