using Npgsql;
using NpgsqlTypes;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Postgres;

/// <summary>
/// One enabled snapshot datasource of a server, from powa_functions. External: its source function lives in
/// its own extension's schema on the remote (PoWA 5). TmpSchema: the quoted schema of its *_src_tmp table on
/// the repository, null when the extension that owns it is not installed there.
/// </summary>
public sealed record Datasource(string Name, bool External, string? QuerySource, string? QueryCleanup, string FunctionName,
    string? TmpSchema)
{
    /// <summary>The quoted *_src_tmp table the datasource's rows go to on the repository.</summary>
    public string? Target => TmpSchema is null || QuerySource is null ? null : $"{TmpSchema}.{RepositoryQueries.QuoteIdentifier(QuerySource + "_tmp")}";
}

/// <summary>
/// What a remote server runs, saved into powa_servers.version and the extension versions; Schemas: the quoted
/// schema of each installed extension, to qualify the names of powa and its datasources there.
/// </summary>
public sealed record RemoteVersions(
    string ServerVersion,
    int ServerVersionNum,
    IReadOnlyDictionary<string, string> Extensions,
    string? HypopgAvailableVersion,
    IReadOnlyDictionary<string, string> Schemas);

/// <summary>When a server was last snapshotted; Registered is false when it has no powa_snapshot_metas row.</summary>
/// <param name="Sequence">the server's coalesce_seq: one more with each snapshot stored (ReplaceErrors)</param>
public sealed record LastSnapshot(bool Registered, DateTimeOffset? At, long? Sequence = null);

/// <summary>Running the repository's SQL (PowaSql, per powa major) and reading its answers.</summary>
public static class RepositoryQueries
{
    /// <param name="passwords">false: the rows without their passwords (the coordinator's: it sends srvids and row versions only)</param>
    public static async Task<IReadOnlyList<ServerRow>> LoadActiveServersAsync(PowaSql sql, NpgsqlConnection conn, CancellationToken ct,
        bool passwords = true)
    {
        var cmd = new NpgsqlCommand(sql.ActiveServers(passwords), conn);
        await using var cmdScope = cmd.ConfigureAwait(false);
        var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        var list = new List<ServerRow>();
        while (await r.ReadAsync(ct).ConfigureAwait(false)) list.Add(ReadRow(r));
        return list;
    }

    /// <summary>One server's row, or null when it is not active (removed, deactivated).</summary>
    /// <summary>The server's row if it is active, and the repository's powa version now (null with no row).</summary>
    public static async Task<(ServerRow? Row, string? RepositoryPowa)> LoadActiveServerAsync(PowaSql sql, NpgsqlConnection conn, int srvid,
        CancellationToken ct)
    {
        var cmd = new NpgsqlCommand(sql.ActiveServer, conn) { Parameters = { new() { Value = srvid } } };
        await using var cmdScope = cmd.ConfigureAwait(false);
        var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        return await r.ReadAsync(ct).ConfigureAwait(false) ? (ReadRow(r), r.IsDBNull(9) ? null : r.GetString(9)) : (null, null);
    }

    static ServerRow ReadRow(NpgsqlDataReader r) => new(
        new ServerConfig(r.GetInt32(0), r.GetString(1), r.GetInt32(2), r.GetString(3),
            r.IsDBNull(4) ? null : r.GetString(4), r.GetString(5), r.GetInt32(6),
            r.IsDBNull(7) ? null : r.GetString(7)),
        r.GetString(8));

    /// <summary>
    /// What the repository is, whatever the DSN calls it: its cluster's system identifier and its database's oid
    /// (<c>7716069058342545381-16384</c>); the same through a host list's failover to a physical standby, another
    /// for another database or a restored copy. Null when pg_control_system() is not granted to this role.
    /// </summary>
    public static async Task<string?> IdentityAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        var cmd = new NpgsqlCommand(
            "SELECT s.system_identifier::text || '-' || d.oid::text FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d " +
            "WHERE d.datname = pg_catalog.current_database()", conn);
        await using var cmdScope = cmd.ConfigureAwait(false);
        try { return await cmd.ExecuteScalarAsync(ct).ConfigureAwait(false) as string; }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege) { return null; }
    }

    /// <summary>
    /// Appends (or replaces) the collector's errors for a server in powa_snapshot_metas.errors. A replacement
    /// is written unless a snapshot was stored since <paramref name="seenSequence"/> (PowaSql.ReplaceErrors);
    /// returns whether it was written, and the row's coalesce_seq when read.
    /// </summary>
    public static async Task<(bool Written, long? Sequence)> ReportErrorsAsync(PowaSql sql, NpgsqlConnection conn, int srvid,
        IReadOnlyList<string> errors, bool replace, CancellationToken ct, long? seenSequence = null)
    {
        var cmd = new NpgsqlCommand(replace ? sql.ReplaceErrors : sql.AppendErrors, conn)
        {
            Parameters =
            {
                new() { Value = srvid },
                new() { Value = errors.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
            },
        };
        await using var cmdScope = cmd.ConfigureAwait(false);
        if (!replace)
        {
            await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            return (true, null);
        }
        cmd.Parameters.Add(new NpgsqlParameter { Value = (object?)seenSequence ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
        var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        return await r.ReadAsync(ct).ConfigureAwait(false) ? (r.GetBoolean(1), r.GetInt64(0)) : (false, null);
    }

    public static async Task<LastSnapshot> GetLastSnapshotAsync(PowaSql sql, NpgsqlConnection conn, int srvid, CancellationToken ct)
    {
        var cmd = new NpgsqlCommand(sql.LastSnapshot, conn) { Parameters = { new() { Value = srvid } } };
        await using var cmdScope = cmd.ConfigureAwait(false);
        var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        if (!await r.ReadAsync(ct).ConfigureAwait(false)) return new LastSnapshot(false, null);
        return new LastSnapshot(true, r.IsDBNull(0) ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)(r.GetDouble(0) * 1000)), r.GetInt64(1));
    }

    /// <summary>
    /// powa_servers.version, the version of every extension the repository tracks for the server
    /// (powa_extensions in PoWA 4, powa_extension_config in 5), and the hypopg row kept in step with what the
    /// remote can install.
    /// </summary>
    public static async Task SaveVersionsAsync(PowaSql sql, NpgsqlConnection conn, int srvid, RemoteVersions v, CancellationToken ct)
    {
        var batch = new NpgsqlBatch(conn)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(sql.SaveServerVersion)
                    { Parameters = { new() { Value = srvid }, new() { Value = v.ServerVersion } } },
                new NpgsqlBatchCommand(sql.SaveExtensionVersions)
                {
                    Parameters =
                    {
                        new() { Value = srvid },
                        new() { Value = v.Extensions.Keys.ToArray() },
                        new() { Value = v.Extensions.Values.ToArray() },
                    },
                },
                v.HypopgAvailableVersion is null
                    ? new NpgsqlBatchCommand(sql.ForgetHypopg)
                        { Parameters = { new() { Value = srvid } } }
                    : new NpgsqlBatchCommand(sql.SaveHypopg)
                        { Parameters = { new() { Value = srvid }, new() { Value = v.HypopgAvailableVersion } } },
            },
        };
        await using var batchScope = batch.ConfigureAwait(false);
        await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    /// <summary>
    /// The staging tables (PowaSql.IsStagingTable), quoted, and whether this role may
    /// vacuum each: it is a member of the table's owner or of the database's, or a superuser (PostgreSQL 15 and
    /// older; 16's MAINTAIN privilege is not looked at).
    /// </summary>
    const string StagingTables =
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), " +
        "pg_catalog.pg_has_role(c.relowner, 'USAGE') OR pg_catalog.pg_has_role((SELECT datdba FROM pg_catalog.pg_database " +
        "WHERE datname = pg_catalog.current_database()), 'USAGE') OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) " +
        $"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {PowaSql.IsStagingTable} ORDER BY 1";

    /// <summary>The *_src_tmp tables this role may vacuum (quoted), and how many others there are.</summary>
    public static async Task<(List<string> May, int NotAllowed)> StagingTablesAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        var may = new List<string>();
        var notAllowed = 0;
        var cmd = new NpgsqlCommand(StagingTables, conn);
        await using var cmdScope = cmd.ConfigureAwait(false);
        var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await using var rScope = r.ConfigureAwait(false);
        while (await r.ReadAsync(ct).ConfigureAwait(false))
            if (!r.IsDBNull(1) && r.GetBoolean(1)) may.Add(r.GetString(0));
            else notAllowed++;
        return (may, notAllowed);
    }

    /// <summary>
    /// VACUUM (SKIP_LOCKED) of the *_src_tmp tables this role may vacuum, outside any transaction; a table that
    /// another vacuum holds is skipped. Returns how many were vacuumed and how many this role may not vacuum.
    /// </summary>
    public static async Task<(int Vacuumed, int NotAllowed)> VacuumStagingAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        var (may, notAllowed) = await StagingTablesAsync(conn, ct).ConfigureAwait(false);
        if (may.Count > 0) await PgSession.ExecAsync(conn, "VACUUM (SKIP_LOCKED) " + string.Join(", ", may), ct).ConfigureAwait(false);
        return (may.Count, notAllowed);
    }

    /// <summary>Double-quotes an identifier read from powa_functions; rejects anything but a plain name.</summary>
    public static string QuoteIdentifier(string name)
    {
        if (name.Length == 0 || name.Length > 63 || !(char.IsAsciiLetter(name[0]) || name[0] == '_') ||
            !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
            throw new ArgumentException($"\"{name}\" is not a plain SQL identifier");
        return "\"" + name + "\"";
    }
}

/// <summary>Another transaction (a collector on another node) is taking a snapshot of this server right now.</summary>
public sealed class SnapshotInProgressException(int srvid)
    : Exception($"another collector is taking a snapshot of server {srvid} right now (its powa_snapshot_metas row is locked)");
