using System.Globalization;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Postgres;

/// <summary>
/// What one snapshot reads and how, handed by a server to its SnapshotRun: the plan, the remote's extension
/// schemas, the steps to guard with a savepoint (they failed last time), the catalog refresh asked for, and
/// the server, for the per-database connections (PoWA 5; their connection strings are made only then).
/// </summary>
public sealed record SnapshotJob(SnapshotPlan Plan, IReadOnlyDictionary<string, string> Schemas, IReadOnlySet<string> Guarded,
    CatalogRefresh? Refresh, ServerConfig Server, TimeSpan CallTimeout, TimeSpan ConnectTimeout, RemoteSecurity? Security = null,
    Telemetry.CollectorMetrics? Metrics = null);

/// <summary>
/// PoWA 5's per-database datasources: in each database of the remote that one of them applies to, a connection
/// of its own (search_path pg_catalog, as the reference), then for each datasource a binary COPY of its query,
/// with the server's id, the snapshot's timestamp (db modules: the now() of the snapshot's remote transaction,
/// so that one snapshot has one ts across databases) and the database's oid in front, every column cast to the
/// type of the repository's *_src_tmp column. Statements run in autocommit: one that fails is recorded and the
/// others go on; a database dropped since it was listed is skipped.
/// The srvid and the timestamp reach the remote as session settings of that connection, not as literals in the
/// COPY's text: PostgreSQL 15's pg_stat_statements keys a utility statement (COPY) by its text, so a literal
/// timestamp made a new entry per datasource, database and snapshot, which filled the remote's
/// pg_stat_statements with the collector's own statements and pushed its real queries out.
/// </summary>
public static class DatabaseReader
{
    public static async Task ReadAsync(SnapshotJob job, SnapshotStage stage, DateTime ts, IReadOnlyList<string> databases,
        CancellationToken abort)
    {
        foreach (var db in databases)
        {
            var steps = job.Plan.PerDatabase.Where(d => d.AppliesTo(db, job.Refresh)).ToList();
            if (steps.Count == 0) continue;
            abort.ThrowIfCancellationRequested();
            NpgsqlConnection conn;
            try
            {
                using var cts = PgSession.Timeout(job.ConnectTimeout);
                conn = await PgSession.OpenAsync(job.Server.ToConnectionString(job.ConnectTimeout, db, job.Security), cts.Token,
                    SessionSettings(stage.SrvId, ts)).ConfigureAwait(false);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidCatalogName)
            {
                continue; // dropped (or renamed) since the list was read: nothing to collect there
            }
            catch (Exception e) when (e is NpgsqlException or OperationCanceledException or TimeoutException or System.Net.Sockets.SocketException)
            {
                abort.ThrowIfCancellationRequested();
                stage.Errors.Add($"Could not connect to remote database {db}: {PgSession.Describe(e)}");
                continue;
            }
            await using (conn.ConfigureAwait(false))
            await using (abort.Register(() => RemoteDeadline.Break(conn)).ConfigureAwait(false))
            {
                foreach (var ds in steps)
                {
                    if (!await ReadOneAsync(conn, job, stage, ds, db, ts).ConfigureAwait(false))
                    {
                        abort.ThrowIfCancellationRequested();
                        if (PgSession.IsBroken(conn)) break; // the errors say why; the next database gets a connection of its own
                    }
                }
            }
        }
    }

    /// <summary>One datasource in one database into the stage; false (and the error recorded) when it failed.</summary>
    static async Task<bool> ReadOneAsync(NpgsqlConnection conn, SnapshotJob job, SnapshotStage stage, DbDatasource ds, string db, DateTime ts)
    {
        if (ds.Target is not { } target || ds.Columns.Count == 0)
        {
            stage.Errors.Add($"Error while calling {ds.Name} on database {db}: its table is missing on the repository server");
            return false;
        }
        var offset = stage.Length;
        var text = NeedsText(ds);
        try
        {
            var sql = ExportSql(ds, text);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            await RemoteDeadline.RunAsync(conn, job.CallTimeout, async () =>
            {
                if (text)
                {
                    // The UTF-8 bytes of the text COPY from the export's own stream, as they come; the TextReader
                    // is never disposed (its Dispose is synchronous: see SnapshotStore.CopyInAsync).
                    var reader = (StreamReader)await conn.BeginTextExportAsync(sql).ConfigureAwait(false);
                    var raw = reader.BaseStream;
                    await using var rawScope = raw.ConfigureAwait(false);
                    await stage.AppendAsync(raw, CancellationToken.None).ConfigureAwait(false);
                }
                else
                {
                    var copy = await conn.BeginRawBinaryCopyAsync(sql).ConfigureAwait(false);
                    await using var copyScope = copy.ConfigureAwait(false);
                    await stage.AppendAsync(copy, CancellationToken.None).ConfigureAwait(false);
                }
                return true;
            }).ConfigureAwait(false);
            stage.AddDatasource($"{ds.Name} ({db})", target, offset, text);
            job.Metrics?.DatasourceRead(ds.Name, System.Diagnostics.Stopwatch.GetElapsedTime(started), stage.Length - offset);
            return true;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            stage.Truncate(offset);
            stage.Errors.Add($"Error while calling {ds.Name} on database {db}: {PgSession.Describe(e)}");
            return false;
        }
    }

    /// <summary>
    /// Whether a datasource goes in text COPY: PostgreSQL cannot receive an empty oidvector or int2vector in
    /// binary (pg_proc.proargtypes of a function without argument), so pg_proc's catalog travels as text.
    /// </summary>
    public static bool NeedsText(DbDatasource ds) => ds.Columns.Any(c => c is "oidvector" or "int2vector");

    /// <summary>
    /// The COPY of a per-database datasource: srvid, ts (db modules only), the database's oid, then the
    /// query's columns, each cast to the repository's column type so that the bytes load as they are. The
    /// srvid and ts come from the session's settings (<see cref="SessionSettings"/>): the text is the same
    /// for every server and snapshot.
    /// </summary>
    public static string ExportSql(DbDatasource ds, bool text = false)
    {
        var names = Enumerable.Range(1, ds.Columns.Count).Select(i => $"c{i}").ToList();
        var casts = string.Join(", ", names.Select((n, i) => $"s.{n}::{ds.Columns[i]}"));
        var srvid = $"pg_catalog.current_setting('{SrvIdSetting}')::integer AS srvid";
        var prefix = ds.Catalog ? srvid : $"{srvid}, pg_catalog.current_setting('{TimestampSetting}')::timestamptz AS ts";
        return $"COPY (SELECT {casts} FROM (SELECT {prefix}, d.dbid, src.* FROM ({ds.QuerySource}) src " +
               "CROSS JOIN (SELECT oid AS dbid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) d) " +
               $"s({string.Join(", ", names)})) TO STDOUT" + (text ? "" : " (FORMAT binary)");
    }

    /// <summary>Custom settings (any role may set a dotted name) that carry the srvid and the snapshot's ts.</summary>
    public const string SrvIdSetting = ServerConfig.SrvIdSetting, TimestampSetting = "powa_cluster.snapshot_ts";

    /// <summary>
    /// A per-database connection's settings: search_path pg_catalog (as the reference), the srvid and the
    /// snapshot's timestamp (ISO, UTC, to the microsecond: read the same whatever the session's DateStyle).
    /// They travel as parameters of one set_config query (PgSession.OpenAsync), never as SQL text.
    /// </summary>
    public static IReadOnlyDictionary<string, string> SessionSettings(int srvid, DateTime ts) => new Dictionary<string, string>
    {
        ["search_path"] = "pg_catalog",
        [SrvIdSetting] = srvid.ToString(CultureInfo.InvariantCulture),
        [TimestampSetting] = ts.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture) + "+00",
    };
}
