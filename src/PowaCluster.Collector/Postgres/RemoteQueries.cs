using Npgsql;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Postgres;

/// <summary>A remote server that cannot be collected as it is set up (no powa, wrong version).</summary>
public sealed class RemoteSetupException(string message) : Exception(message);

/// <summary>The SQL the collector runs on a monitored (remote) server.</summary>
public static class RemoteQueries
{
    /// <summary>
    /// powa must be installed on the remote, at version 4 or later and at the repository's major.minor.
    /// PoWA 4.0 needs its library loaded for its GUCs.
    /// </summary>
    public static async Task<PowaVersion> CheckPowaAsync(NpgsqlConnection conn, PowaVersion repository, CancellationToken ct)
    {
        var v = (await PgSession.FindPowaAsync(conn, ct).ConfigureAwait(false))?.Version
            ?? throw new RemoteSetupException($"the powa extension is not installed in database \"{conn.Database}\" of the remote server");
        if (v.Major < 4)
            throw new RemoteSetupException($"the remote server has powa {v}, 4.0 or later is required");
        if (v.MismatchWith(repository) is { } mismatch) throw new RemoteSetupException(mismatch);
        if (v is { Major: 4, Minor: 0 })
            await PgSession.ExecAsync(conn, "LOAD 'powa'", ct).ConfigureAwait(false);
        // PoWA 5 qualifies every name: nothing on the remote's search_path may stand in for them.
        if (v.Major >= 5)
            await PgSession.ExecAsync(conn, "SET search_path TO pg_catalog", ct).ConfigureAwait(false);
        return v;
    }

    public static async Task<RemoteVersions> ReadVersionsAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        var batch = new NpgsqlBatch(conn)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand("SELECT pg_catalog.current_setting('server_version'), pg_catalog.current_setting('server_version_num')::int"),
                new NpgsqlBatchCommand("SELECT e.extname, e.extversion, pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e " +
                                       "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"),
                new NpgsqlBatchCommand("SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'"),
            },
        };
        await using var batchScope = batch.ConfigureAwait(false);
        var r = await batch.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        await r.ReadAsync(ct).ConfigureAwait(false);
        var serverVersion = r.GetString(0);
        var serverVersionNum = r.GetInt32(1);
        await r.NextResultAsync(ct).ConfigureAwait(false);
        var exts = new Dictionary<string, string>();
        var schemas = new Dictionary<string, string>();
        while (await r.ReadAsync(ct).ConfigureAwait(false))
        {
            exts[r.GetString(0)] = r.GetString(1);
            schemas[r.GetString(0)] = r.GetString(2);
        }
        await r.NextResultAsync(ct).ConfigureAwait(false);
        string? hypopg = await r.ReadAsync(ct).ConfigureAwait(false) && !r.IsDBNull(0) ? r.GetString(0) : null;
        return new RemoteVersions(serverVersion, serverVersionNum, exts, hypopg, schemas);
    }

    /// <summary>
    /// Binary COPY of one datasource, srvid first as the repository's *_src_tmp tables expect, from its source
    /// function in <paramref name="schema"/> (quoted). Binary: the bytes go to the repository as they came,
    /// and the repository does not parse text. The srvid is the session's setting (ServerConfig.SrvIdSetting),
    /// not a literal: the text is the same for every server.
    /// </summary>
    public static string ExportSql(string schema, string querySource) =>
        $"COPY (SELECT pg_catalog.current_setting('{ServerConfig.SrvIdSetting}')::integer, * FROM {schema}.{RepositoryQueries.QuoteIdentifier(querySource)}(0)) TO STDOUT (FORMAT binary)";

    /// <summary>
    /// A datasource's cleanup with its placeholders resolved: PoWA 5 writes <c>{extension}</c> where the
    /// schema of that extension goes (<c>SELECT {pg_qualstats}.pg_qualstats_reset()</c>).
    /// </summary>
    /// <exception cref="ArgumentException">a placeholder names an extension the remote does not have</exception>
    public static string ResolveSchemas(string sql, IReadOnlyDictionary<string, string> schemas) =>
        System.Text.RegularExpressions.Regex.Replace(sql, @"\{([A-Za-z_][A-Za-z0-9_]*)\}", m =>
            schemas.TryGetValue(m.Groups[1].Value, out var schema) ? schema
                : throw new ArgumentException($"extension {m.Groups[1].Value} is not installed on the remote server"));

    /// <summary>
    /// Opens a remote connection and checks it can be collected: powa present and compatible; reads the
    /// versions to save. The remote transaction of a snapshot is short (the repository is written later,
    /// from the stage), but a transaction left by a collector that died still ends after a while.
    /// </summary>
    /// <param name="srvid">set as the session's ServerConfig.SrvIdSetting, which the global datasources' COPYs read</param>
    public static async Task<(NpgsqlConnection Conn, RemoteVersions Versions)> ConnectAsync(
        NpgsqlConnectionStringBuilder csb, int srvid, PowaVersion repository, TimeSpan timeout, TimeSpan idleInTransaction)
    {
        NpgsqlConnection conn;
        var settings = new Dictionary<string, string>(PgSession.DeadPeerSettings(idleInTransaction))
        {
            [ServerConfig.SrvIdSetting] = srvid.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        // Opening has no backend to cancel yet: the token only breaks the socket.
        using (var cts = PgSession.Timeout(timeout))
            conn = await PgSession.OpenAsync(csb, cts.Token, settings).ConfigureAwait(false);
        try
        {
            // Once open, a deadline closes the connection rather than a token that makes Npgsql cancel (RemoteDeadline).
            return await RemoteDeadline.RunAsync(conn, timeout, async () =>
            {
                await CheckPowaAsync(conn, repository, CancellationToken.None).ConfigureAwait(false);
                return (conn, await ReadVersionsAsync(conn, CancellationToken.None).ConfigureAwait(false));
            }).ConfigureAwait(false);
        }
        catch
        {
            await conn.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
