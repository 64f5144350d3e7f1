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
    CatalogRefresh? Refresh, ServerConfig Server, TimeSpan CallTimeout, TimeSpan ConnectTimeout);

/// <summary>
/// PoWA 5's per-database datasources: in each database of the remote that one of them applies to, a connection
/// of its own (search_path pg_catalog, as the reference), then for each datasource a binary COPY of its query,
/// with the server's id, the snapshot's timestamp (db modules: the now() of the snapshot's remote transaction,
/// so that one snapshot has one ts across databases) and the database's oid in front, every column cast to the
/// type of the repository's *_src_tmp column. Statements run in autocommit: one that fails is recorded and the
/// others go on; a database dropped since it was listed is skipped.
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
                conn = await PgSession.OpenAsync(job.Server.ToConnectionString(job.ConnectTimeout, db), cts.Token, PerDatabaseSettings)
                    .ConfigureAwait(false);
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
            var sql = ExportSql(stage.SrvId, ds, ts, text);
            await RemoteDeadline.RunAsync(conn, job.CallTimeout, async () =>
            {
                if (text)
                {
                    // The UTF-8 bytes of the text COPY from the export's own stream, as they come; the TextReader
                    // is never disposed (its Dispose is synchronous: see SnapshotStore.CopyInAsync).
                    var reader = (StreamReader)await conn.BeginTextExportAsync(sql).ConfigureAwait(false);
                    await using var raw = reader.BaseStream;
                    await stage.AppendAsync(raw, CancellationToken.None).ConfigureAwait(false);
                }
                else
                {
                    await using var copy = await conn.BeginRawBinaryCopyAsync(sql).ConfigureAwait(false);
                    await stage.AppendAsync(copy, CancellationToken.None).ConfigureAwait(false);
                }
                return true;
            }).ConfigureAwait(false);
            stage.AddDatasource($"{ds.Name} ({db})", target, offset, text);
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
    /// query's columns, each cast to the repository's column type so that the bytes load as they are.
    /// </summary>
    public static string ExportSql(int srvid, DbDatasource ds, DateTime ts, bool text = false)
    {
        var names = Enumerable.Range(1, ds.Columns.Count).Select(i => $"c{i}").ToList();
        var casts = string.Join(", ", names.Select((n, i) => $"s.{n}::{ds.Columns[i]}"));
        var prefix = ds.Catalog ? $"{srvid} AS srvid" : $"{srvid} AS srvid, {TimestampLiteral(ts)} AS ts";
        return $"COPY (SELECT {casts} FROM (SELECT {prefix}, d.dbid, src.* FROM ({ds.QuerySource}) src " +
               "CROSS JOIN (SELECT oid AS dbid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) d) " +
               $"s({string.Join(", ", names)})) TO STDOUT" + (text ? "" : " (FORMAT binary)");
    }

    /// <summary>A timestamptz literal in ISO form (read the same whatever the session's DateStyle), to the microsecond.</summary>
    public static string TimestampLiteral(DateTime ts) =>
        $"'{ts.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture)}+00'::timestamptz";

    static readonly IReadOnlyDictionary<string, string> PerDatabaseSettings = new Dictionary<string, string> { ["search_path"] = "pg_catalog" };
}
