using Npgsql;
using PowaCluster.Collector.Staging;

namespace PowaCluster.Collector.Postgres;

/// <summary>
/// Reads one snapshot off a remote server into a stage: for each datasource, in priority order, the binary
/// COPY output of <c>SELECT srvid, * FROM public.&lt;query_source&gt;(0)</c>, then its cleanup (the pg_qualstats
/// reset). One remote transaction, so that every datasource sees the same now() (their ts).
/// No savepoint per datasource: a datasource that fails (its extension is missing) rolls the transaction back
/// and a new one goes on with the next, so a healthy snapshot costs one round trip per datasource.
/// Bytes go from the socket to the stage untouched: no decoding, nothing allocated per row.
/// </summary>
public static class SnapshotReader
{
    /// <param name="callTimeout">timeout of each remote call (a COPY, a cleanup)</param>
    /// <param name="abort">the snapshot is abandoned (its server stopped)</param>
    /// <exception cref="PostgresException">only for a failure outside a datasource (BEGIN, COMMIT)</exception>
    public static async Task ReadAsync(NpgsqlConnection conn, IReadOnlyList<Datasource> datasources, SnapshotStage stage,
        TimeSpan callTimeout, CancellationToken abort)
    {
        await ExecAsync(conn, "BEGIN", callTimeout, abort).ConfigureAwait(false);
        foreach (var ds in datasources)
        {
            if (ds.QuerySource is null) continue; // a module without a source function: nothing to read
            string sql;
            try { sql = RemoteQueries.ExportSql(stage.SrvId, ds.QuerySource); }
            catch (ArgumentException e)
            {
                stage.Errors.Add($"Error while calling public.{ds.QuerySource}: {e.Message}");
                continue;
            }
            var offset = stage.Length;
            try
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(abort);
                cts.CancelAfter(callTimeout);
                await using (var copy = await conn.BeginRawBinaryCopyAsync(sql, cts.Token).ConfigureAwait(false))
                    await stage.AppendAsync(copy, cts.Token).ConfigureAwait(false);
                stage.AddDatasource(ds.QuerySource, offset);
            }
            catch (PostgresException e)
            {
                stage.Truncate(offset);
                stage.Errors.Add($"Error while calling public.{ds.QuerySource}: {PgSession.Describe(e)}");
                await ExecAsync(conn, "ROLLBACK; BEGIN", callTimeout, abort).ConfigureAwait(false);
            }
            // As the reference does, the cleanup runs even when the datasource failed.
            if (ds.QueryCleanup is { } cleanup)
            {
                try { await ExecAsync(conn, cleanup, callTimeout, abort).ConfigureAwait(false); }
                catch (PostgresException e)
                {
                    stage.Errors.Add($"Error while calling {cleanup}: {PgSession.Describe(e)}");
                    await ExecAsync(conn, "ROLLBACK; BEGIN", callTimeout, abort).ConfigureAwait(false);
                }
            }
        }
        await ExecAsync(conn, "COMMIT", callTimeout, abort).ConfigureAwait(false);
        stage.Seal();
    }

    static async Task ExecAsync(NpgsqlConnection conn, string sql, TimeSpan timeout, CancellationToken abort)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(abort);
        cts.CancelAfter(timeout);
        await using var cmd = new NpgsqlCommand(sql, conn);
        await cmd.ExecuteNonQueryAsync(cts.Token).ConfigureAwait(false);
    }
}
