using Npgsql;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Postgres;

/// <summary>
/// Reads one snapshot off a remote server into a stage: for each datasource, in priority order, the binary
/// COPY output of <c>SELECT srvid, * FROM &lt;schema&gt;.&lt;query_source&gt;(0)</c>, then its cleanup (the pg_qualstats
/// reset). One remote transaction, so that every datasource sees the same now() (their ts).
/// A healthy snapshot costs one round trip per datasource: no savepoint. A step that failed in the previous
/// snapshot (its extension is missing) is guarded by a savepoint from then on, so the transaction, and its
/// now(), survive it; a step that fails unguarded, for the first time, rolls the transaction back and a new
/// one goes on with the next datasource. The stage records the steps that failed, for the next snapshot.
/// Bytes go from the socket to the stage untouched: no decoding, nothing allocated per row.
/// </summary>
public static class SnapshotReader
{
    /// <param name="job">what to read: the plan, the remote's schemas, the steps that failed in the previous
    /// snapshot (SnapshotStage.FailedSteps), the timeout of each remote call (a COPY, a cleanup)</param>
    /// <param name="abort">the snapshot is abandoned (its server stopped)</param>
    /// <param name="beforeCleanup">when set (the server spools: the repository is down), the remote's cleanups
    /// (pg_qualstats' reset) wait until the whole stage is read and this has run (it writes the stage to the
    /// spool and fsyncs it): what a cleanup resets is on the node's disk first. They then run in autocommit,
    /// and the errors they meet are given to <paramref name="afterCleanup"/>.</param>
    /// <exception cref="PostgresException">only for a failure outside a datasource (BEGIN, COMMIT)</exception>
    public static async Task ReadAsync(NpgsqlConnection conn, SnapshotJob job, SnapshotStage stage, CancellationToken abort,
        Func<SnapshotStage, Task>? beforeCleanup = null, Action<IReadOnlyList<string>>? afterCleanup = null)
    {
        var deferred = beforeCleanup is null ? null : new List<(string Key, string Sql)>();
        var (schemas, guarded, callTimeout) = (job.Schemas, job.Guarded, job.CallTimeout);
        // Abandoned (its server stopped): the connection is closed, which ends the call in flight at once
        // (no token reaches Npgsql: see RemoteDeadline).
        using var breaker = abort.Register(() => RemoteDeadline.Break(conn));
        abort.ThrowIfCancellationRequested();
        // The remote's powa now (one round trip with the BEGIN): the repository stores the stage only if it still
        // has the same major.minor (an ALTER EXTENSION powa UPDATE on either side changes tables' shapes). And
        // the transaction's now(), the ts of its rows: when the snapshot was taken, by the remote's clock.
        (stage.RemotePowa, stage.TakenAtUtc) = await RemoteDeadline.RunAsync(conn, callTimeout, async () =>
        {
            var begin = new NpgsqlBatch(conn)
            {
                BatchCommands = { new NpgsqlBatchCommand("BEGIN"), new NpgsqlBatchCommand($"SELECT {PowaSql.PowaVersionNow}, pg_catalog.now()") },
            };
            await using var beginScope = begin.ConfigureAwait(false);
            var r = await begin.ExecuteReaderAsync().ConfigureAwait(false);
            await using var rScope = r.ConfigureAwait(false);
            await r.ReadAsync().ConfigureAwait(false);
            return (r.IsDBNull(0) ? "" : r.GetString(0), r.GetFieldValue<DateTime>(1).ToUniversalTime());
        }).ConfigureAwait(false);
        foreach (var ds in job.Plan.Global)
        {
            if (ds.QuerySource is null) continue; // a module without a source function: nothing to read
            // The source function lives in powa's schema, or in its own extension's (PoWA 5's external ones).
            if (!schemas.TryGetValue(ds.External ? ds.Name : "powa", out var schema))
            {
                stage.Errors.Add($"Extension {ds.Name} is not installed on the remote server");
                continue;
            }
            if (ds.Target is not { } target)
            {
                stage.Errors.Add($"Extension {ds.Name} is not installed on the repository server");
                continue;
            }
            string sql;
            try { sql = RemoteQueries.ExportSql(schema, ds.QuerySource); }
            catch (ArgumentException e)
            {
                stage.Errors.Add($"Error while calling {schema}.{ds.QuerySource}: {e.Message}");
                continue;
            }
            var offset = stage.Length;
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var key = SourceStep(ds.QuerySource);
            var ok = await StepAsync(conn, stage, key, guarded.Contains(key), async () =>
            {
                var copy = await conn.BeginRawBinaryCopyAsync(sql).ConfigureAwait(false);
                await using (copy.ConfigureAwait(false))
                    await stage.AppendAsync(copy, CancellationToken.None).ConfigureAwait(false);
            }, e => $"Error while calling {schema}.{ds.QuerySource}: {e}", callTimeout).ConfigureAwait(false);
            if (ok)
            {
                stage.AddDatasource(ds.Name, target, offset);
                job.Metrics?.DatasourceRead(ds.Name, System.Diagnostics.Stopwatch.GetElapsedTime(started), stage.Length - offset);
            }
            else stage.Truncate(offset);
            // As the reference does, the cleanup runs even when the datasource failed.
            if (ds.QueryCleanup is { } cleanupTemplate)
            {
                string cleanup;
                try { cleanup = RemoteQueries.ResolveSchemas(cleanupTemplate, schemas); }
                catch (ArgumentException e)
                {
                    stage.Errors.Add($"Error while calling {cleanupTemplate}: {e.Message}");
                    continue;
                }
                var cleanupKey = CleanupStep(ds.QuerySource);
                if (deferred is not null)
                {
                    deferred.Add((cleanupKey, cleanup));
                    continue;
                }
                await StepAsync(conn, stage, cleanupKey, guarded.Contains(cleanupKey),
                    () => ExecAsync(conn, cleanup), e => $"Error while calling {cleanup}: {e}", callTimeout).ConfigureAwait(false);
            }
        }
        // PoWA 5's per-database datasources: the databases to visit and the snapshot's one timestamp come from
        // this transaction, then each database is read on a connection of its own.
        // One row per database, not an array: the remote connection's data source then never builds the array
        // types' mappings (docs/architecture.md, "Memory").
        (DateTime RemoteNow, List<string> Databases)? perDb = null;
        if (job.Plan.PerDatabase.Count > 0)
            perDb = await RemoteDeadline.RunAsync(conn, callTimeout, async () =>
            {
                var cmd = new NpgsqlCommand("SELECT pg_catalog.now(), datname::text FROM pg_catalog.pg_database " +
                                            "WHERE datallowconn ORDER BY datname", conn);
                await using var cmdScope = cmd.ConfigureAwait(false);
                var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false);
                await using var rScope = r.ConfigureAwait(false);
                var now = DateTime.MinValue;
                var databases = new List<string>();
                while (await r.ReadAsync().ConfigureAwait(false))
                {
                    now = r.GetFieldValue<DateTime>(0);
                    databases.Add(r.GetString(1));
                }
                return (now, databases);
            }).ConfigureAwait(false);
        await ExecAsync(conn, "COMMIT", callTimeout).ConfigureAwait(false);
        if (perDb is { } p) await DatabaseReader.ReadAsync(job, stage, p.RemoteNow, p.Databases, abort).ConfigureAwait(false);
        stage.Seal();
        if (beforeCleanup is null) return;
        await beforeCleanup(stage).ConfigureAwait(false);
        var errors = new List<string>();
        foreach (var (key, cleanup) in deferred!)
        {
            try { await ExecAsync(conn, cleanup, callTimeout).ConfigureAwait(false); }
            catch (PostgresException e)
            {
                errors.Add($"Error while calling {cleanup}: {PgSession.Describe(e)}");
                stage.FailedSteps.Add(key);
            }
        }
        stage.Errors.AddRange(errors);
        afterCleanup?.Invoke(errors);
    }

    public static string SourceStep(string querySource) => "src:" + querySource;
    public static string CleanupStep(string querySource) => "cleanup:" + querySource;

    /// <summary>Runs one step; a PostgreSQL error is recorded in the stage, and the transaction goes on.</summary>
    static async Task<bool> StepAsync(NpgsqlConnection conn, SnapshotStage stage, string key, bool guarded,
        Func<Task> step, Func<string, string> error, TimeSpan timeout)
    {
        if (guarded) await ExecAsync(conn, "SAVEPOINT src", timeout).ConfigureAwait(false);
        try
        {
            await RemoteDeadline.RunAsync(conn, timeout, async () => { await step().ConfigureAwait(false); return true; }).ConfigureAwait(false);
            return true;
        }
        catch (PostgresException e)
        {
            stage.Errors.Add(error(PgSession.Describe(e)));
            stage.FailedSteps.Add(key);
            await ExecAsync(conn, guarded ? "ROLLBACK TO SAVEPOINT src" : "ROLLBACK; BEGIN", timeout).ConfigureAwait(false);
            return false;
        }
    }

    static Task ExecAsync(NpgsqlConnection conn, string sql, TimeSpan timeout) =>
        RemoteDeadline.RunAsync(conn, timeout, async () => { await ExecAsync(conn, sql).ConfigureAwait(false); return true; });

    /// <summary>No token: the deadline around it ends it (RemoteDeadline).</summary>
    static Task ExecAsync(NpgsqlConnection conn, string sql) => PgSession.ExecAsync(conn, sql, CancellationToken.None);
}
