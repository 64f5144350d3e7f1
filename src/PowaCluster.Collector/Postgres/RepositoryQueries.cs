using Npgsql;
using NpgsqlTypes;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Postgres;

/// <summary>One enabled snapshot datasource of a server, from powa_functions.</summary>
public sealed record Datasource(string Module, string? QuerySource, string? QueryCleanup, string FunctionName);

/// <summary>What a remote server runs, saved into powa_servers.version and powa_extensions.version.</summary>
public sealed record RemoteVersions(
    string ServerVersion,
    IReadOnlyDictionary<string, string> Extensions,
    string? HypopgAvailableVersion);

/// <summary>When a server was last snapshotted; Registered is false when it has no powa_snapshot_metas row.</summary>
public sealed record LastSnapshot(bool Registered, DateTimeOffset? At);

/// <summary>The SQL the collector runs on the repository. Every value goes in as a parameter.</summary>
public static class RepositoryQueries
{
    public static async Task<IReadOnlyList<ServerConfig>> LoadActiveServersAsync(NpgsqlConnection conn, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT id, hostname, port, username, password, dbname, frequency, alias " +
            "FROM public.powa_servers WHERE id > 0 AND frequency > 0 ORDER BY id", conn);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        var list = new List<ServerConfig>();
        while (await r.ReadAsync(ct))
            list.Add(new ServerConfig(r.GetInt32(0), r.GetString(1), r.GetInt32(2), r.GetString(3),
                r.IsDBNull(4) ? null : r.GetString(4), r.GetString(5), r.GetInt32(6),
                r.IsDBNull(7) ? null : r.GetString(7)));
        return list;
    }

    /// <summary>Appends (or replaces) the collector's errors for a server in powa_snapshot_metas.errors.</summary>
    public static async Task ReportErrorsAsync(NpgsqlConnection conn, int srvid, IReadOnlyList<string> errors, bool replace, CancellationToken ct)
    {
        var sql = replace
            ? "UPDATE public.powa_snapshot_metas SET errors = $2 WHERE srvid = $1"
            : "UPDATE public.powa_snapshot_metas SET errors = pg_catalog.array_cat(errors, $2) WHERE srvid = $1";
        await using var cmd = new NpgsqlCommand(sql, conn)
        {
            Parameters =
            {
                new() { Value = srvid },
                new() { Value = errors.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
            },
        };
        await cmd.ExecuteNonQueryAsync(ct);
    }

    public static async Task<LastSnapshot> GetLastSnapshotAsync(NpgsqlConnection conn, int srvid, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(
            "SELECT CASE WHEN snapts = '-infinity' THEN NULL ELSE extract(epoch FROM snapts)::float8 END " +
            "FROM public.powa_snapshot_metas WHERE srvid = $1", conn) { Parameters = { new() { Value = srvid } } };
        await using var r = await cmd.ExecuteReaderAsync(ct);
        if (!await r.ReadAsync(ct)) return new LastSnapshot(false, null);
        return new LastSnapshot(true, r.IsDBNull(0) ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)(r.GetDouble(0) * 1000)));
    }

    /// <summary>
    /// powa_servers.version, powa_extensions.version of every extension the repository tracks for the server,
    /// and the hypopg row kept in step with what the remote can install.
    /// </summary>
    public static async Task SaveVersionsAsync(NpgsqlConnection conn, int srvid, RemoteVersions v, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(conn)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(
                    "UPDATE public.powa_servers SET version = $2 WHERE id = $1 AND version IS DISTINCT FROM $2")
                    { Parameters = { new() { Value = srvid }, new() { Value = v.ServerVersion } } },
                new NpgsqlBatchCommand(
                    "UPDATE public.powa_extensions e SET version = r.version " +
                    "FROM unnest($2::text[], $3::text[]) AS r(extname, version) " +
                    "WHERE e.srvid = $1 AND e.extname = r.extname AND e.version IS DISTINCT FROM r.version")
                {
                    Parameters =
                    {
                        new() { Value = srvid },
                        new() { Value = v.Extensions.Keys.ToArray() },
                        new() { Value = v.Extensions.Values.ToArray() },
                    },
                },
                v.HypopgAvailableVersion is null
                    ? new NpgsqlBatchCommand("DELETE FROM public.powa_extensions WHERE srvid = $1 AND extname = 'hypopg'")
                        { Parameters = { new() { Value = srvid } } }
                    : new NpgsqlBatchCommand(
                        "INSERT INTO public.powa_extensions (srvid, extname, version) VALUES ($1, 'hypopg', $2) " +
                        "ON CONFLICT (srvid, extname) DO UPDATE SET version = EXCLUDED.version " +
                        "WHERE powa_extensions.version IS DISTINCT FROM EXCLUDED.version")
                        { Parameters = { new() { Value = srvid }, new() { Value = v.HypopgAvailableVersion } } },
            },
        };
        await batch.ExecuteNonQueryAsync(ct);
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
