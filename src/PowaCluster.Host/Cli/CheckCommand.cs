using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Postgres;
using PowaCluster.Collector.Security;
using PowaCluster.Host.Startup;

namespace PowaCluster.Host.Cli;

/// <summary>
/// powa-cluster check: reads the configuration as run does, then checks the repository (connection, powa and
/// its version, the privileges the collector uses) and every active server of powa_servers (connection, powa
/// and its version, the extensions the repository registered for it against those installed, pg_read_all_stats),
/// and prints one line per check with its verdict. The repository session is read-only
/// (default_transaction_read_only); on a remote it runs the reads run's connection runs: nothing is written. Exit code 0 when every line is ok, 1 otherwise.
/// </summary>
public static class CheckCommand
{
    public sealed record Line(string Check, bool Ok, string Detail);

    const int Parallel = 16;

    static readonly IReadOnlyDictionary<string, string> ReadOnly = new Dictionary<string, string> { ["default_transaction_read_only"] = "on" };

    public static async Task<int> RunAsync(CommandLine cli)
    {
        var lines = await CheckAsync(cli);
        Print(lines, Console.Out);
        var failed = lines.Count(l => !l.Ok);
        Console.WriteLine(failed == 0
            ? $"check: everything the collector needs is there ({lines.Count} checks)"
            : $"check: {failed} of {lines.Count} checks failed");
        return failed == 0 ? 0 : 1;
    }

    public static async Task<List<Line>> CheckAsync(CommandLine cli)
    {
        var lines = new List<Line>();
        CollectorSettings settings;
        NpgsqlConnectionStringBuilder repository;
        try
        {
            (settings, repository) = SettingsLoader.Load(cli, CollectorHost.CreateBuilder().Configuration);
            lines.Add(new("configuration", true, $"repository from {settings.RepositoryDsnSource}; " +
                (settings.IsOneNode ? "one node" : $"seeds {string.Join(", ", settings.Seeds)}")));
        }
        catch (StartupException e)
        {
            lines.Add(new("configuration", false, e.Message));
            return lines;
        }
        try
        {
            var tls = ClusterTls.Load(settings);
            lines.Add(new("cluster TLS", true, tls is null ? "off (one node on loopback, or Tls:Mode off)" : "certificate, key and CA read"));
        }
        catch (ArgumentException e) { lines.Add(new("cluster TLS", false, e.Message)); }

        var timeout = TimeSpan.FromSeconds(cli.Timeout);
        var csb = PgSession.ForRole(repository, "powa-cluster check", timeout, timeout);
        var where = Dsn.Describe(csb);
        NpgsqlConnection conn;
        try
        {
            using var cts = PgSession.Timeout(timeout);
            conn = await PgSession.OpenAsync(csb, cts.Token, ReadOnly);
            lines.Add(new("repository connection", true, $"{where}, PostgreSQL {conn.PostgreSqlVersion}"));
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or System.Net.Sockets.SocketException or ArgumentException)
        {
            lines.Add(new("repository connection", false, $"{where}: {PgSession.Describe(e)}"));
            return lines;
        }
        await using (conn)
        {
            using var cts = PgSession.Timeout(timeout + timeout);
            PowaSql sql;
            try
            {
                sql = await RepositoryCheck.PowaOfAsync(conn, csb, cts.Token);
                lines.Add(new("repository powa", true, sql.ToString()));
            }
            catch (StartupException e)
            {
                lines.Add(new("repository powa", false, e.Message));
                return lines;
            }
            var missing = await ListAsync(conn, sql.MissingRepositoryPrivileges, null, r => (r.GetString(0), r.GetString(1)), cts.Token);
            var (vacuumable, notAllowed) = await RepositoryQueries.StagingTablesAsync(conn, cts.Token);
            var tables = vacuumable.Count + notAllowed;
            lines.Add(missing.Count == 0
                ? new("repository privileges", true, $"powa_servers, powa_snapshot_metas, powa_take_snapshot and {tables} *_src_tmp tables")
                : new("repository privileges", false, $"{csb.Username ?? "the user"} lacks {Grouped(missing)}"));
            // Not a failure: the tables this role may not vacuum are left to autovacuum (README, StagingVacuumInterval).
            lines.Add(new("staging tables vacuum", true, settings.StagingVacuumInterval <= TimeSpan.Zero
                ? "off (StagingVacuumInterval 0): left to autovacuum"
                : notAllowed == 0 ? $"every {settings.StagingVacuumInterval.TotalSeconds:F0} s, all {vacuumable.Count} *_src_tmp tables"
                : $"{csb.Username ?? "the user"} may not vacuum {notAllowed} of the {tables} *_src_tmp tables " +
                  "(not their owner): they are left to autovacuum, which needs tuning for a large fleet (README, \"A large fleet\")"));

            IReadOnlyList<ServerRow> servers;
            var registered = new Dictionary<int, List<string>>();
            try
            {
                servers = await RepositoryQueries.LoadActiveServersAsync(sql, conn, cts.Token);
                foreach (var s in servers) registered[s.Config.SrvId] = await ListAsync(conn, sql.RegisteredExtensions, s.Config.SrvId, r => r.GetString(0), cts.Token);
            }
            catch (PostgresException e)
            {
                lines.Add(new("servers", false, $"cannot read the servers and their extensions: {PgSession.Describe(e)}"));
                return lines;
            }
            if (servers.Count == 0) lines.Add(new("servers", true, "no active server in powa_servers (nothing to collect yet)"));
            using var gate = new SemaphoreSlim(Parallel);
            var checks = servers.Select(async s =>
            {
                await gate.WaitAsync();
                try { return await CheckServerAsync(s.Config, settings, sql.Version, registered[s.Config.SrvId], timeout); }
                finally { gate.Release(); }
            });
            lines.AddRange(await Task.WhenAll(checks));
        }
        return lines;
    }

    static async Task<Line> CheckServerAsync(ServerConfig server, CollectorSettings settings, PowaVersion repositoryPowa,
        IReadOnlyList<string> registered, TimeSpan timeout)
    {
        var name = $"server {server.SrvId}{(string.IsNullOrEmpty(server.Alias) ? "" : $" ({ServerConfig.Shown(server.Alias)})")} {ServerConfig.Shown(server.Name)}";
        if (server.Problem(settings.ClusterOnLoopback) is { } problem) return new(name, false, problem);
        var csb = server.ToConnectionString(settings);
        csb.Timeout = (int)Math.Ceiling(timeout.TotalSeconds);
        NpgsqlConnection conn;
        RemoteVersions versions;
        try
        {
            (conn, versions) = await RemoteQueries.ConnectAsync(csb, server.SrvId, repositoryPowa, timeout, timeout + timeout);
        }
        catch (RemoteSetupException e) { return new(name, false, e.Message); }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or TimeoutException or System.Net.Sockets.SocketException or ArgumentException)
        {
            return new(name, false, $"cannot connect to {Dsn.Describe(csb)}: {PgSession.Describe(e)}");
        }
        await using (conn)
        {
            var problems = new List<string>();
            var notInstalled = registered.Where(e => !versions.Extensions.ContainsKey(e)).ToList();
            if (notInstalled.Count > 0)
                problems.Add($"registered in the repository but not installed here: {string.Join(", ", notInstalled)} " +
                             "(CREATE EXTENSION them, or powa_deactivate_extension in the repository)");
            bool readAllStats;
            using (var cts = PgSession.Timeout(timeout))
                readAllStats = await ScalarAsync<bool>(conn, "SELECT pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') " +
                    "OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)", cts.Token);
            if (!readAllStats) problems.Add($"{csb.Username} is not a member of pg_read_all_stats (other roles' queries would read <insufficient privilege>)");
            var installed = string.Join(", ", registered.Where(e => e != "powa" && versions.Extensions.ContainsKey(e)).Select(e => $"{e} {versions.Extensions[e]}"));
            return problems.Count == 0
                ? new(name, true, $"PostgreSQL {versions.ServerVersion}; powa {versions.Extensions.GetValueOrDefault("powa")}; {installed}; pg_read_all_stats")
                : new(name, false, string.Join("; ", problems));
        }
    }

    /// <summary>(privilege, object) pairs as "DELETE, INSERT on a, b; UPDATE on c": the objects that lack the same privileges together.</summary>
    static string Grouped(IEnumerable<(string Privilege, string Object)> missing) => string.Join("; ", missing
        .GroupBy(m => m.Object, m => m.Privilege)
        .GroupBy(o => string.Join(", ", o), o => o.Key)
        .Select(g => $"{g.Key} on {string.Join(", ", g)}"));

    /// <summary>The rows of a query ($1 = srvid when given), each made by <paramref name="row"/>.</summary>
    static async Task<List<T>> ListAsync<T>(NpgsqlConnection conn, string query, int? srvid, Func<NpgsqlDataReader, T> row, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(query, conn);
        if (srvid is { } id) cmd.Parameters.Add(new NpgsqlParameter { Value = id });
        await using var r = await cmd.ExecuteReaderAsync(ct);
        var list = new List<T>();
        while (await r.ReadAsync(ct)) list.Add(row(r));
        return list;
    }

    static async Task<T> ScalarAsync<T>(NpgsqlConnection conn, string query, CancellationToken ct)
    {
        await using var cmd = new NpgsqlCommand(query, conn);
        return (T)(await cmd.ExecuteScalarAsync(ct))!;
    }

    public static void Print(IReadOnlyList<Line> lines, TextWriter o)
    {
        var width = Math.Max(5, lines.Max(l => l.Check.Length));
        o.WriteLine($"{"CHECK".PadRight(width)}  VERDICT  DETAIL");
        foreach (var l in lines) o.WriteLine($"{l.Check.PadRight(width)}  {(l.Ok ? "ok" : "FAILED"),-7}  {l.Detail}");
    }
}
