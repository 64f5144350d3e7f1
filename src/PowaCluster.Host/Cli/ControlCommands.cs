using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;
using PowaCluster.Host.Startup;

namespace PowaCluster.Host.Cli;

/// <summary>
/// powa-cluster status / reload / snapshot: talk to a running cluster through the repository, with the same
/// NOTIFY protocol as powa-web. The repository user must be allowed to (pg_signal_backend on PostgreSQL 14+).
/// </summary>
public static class ControlCommands
{
    public static async Task<int> RunAsync(CommandLine cli)
    {
        var (settings, repository) = SettingsLoader.Load(cli, CollectorHost.CreateBuilder().Configuration);
        var csb = PgSession.ForRole(repository, "powa-cluster " + cli.Command, settings.ConnectTimeout, settings.ConnectTimeout);
        await using var conn = await OpenAsync(csb, settings);
        var timeout = TimeSpan.FromSeconds(cli.Timeout);
        switch (cli.Command)
        {
            case "reload":
                {
                    var (status, data) = await ControlClient.AskAsync(conn, csb, "RELOAD", [], timeout);
                    Console.WriteLine(status == "OK" ? "reload done" : $"reload failed: {data}");
                    return status == "OK" ? 0 : 1;
                }
            case "snapshot":
                {
                    var (status, data) = await ControlClient.AskAsync(conn, csb, "FORCE_SNAPSHOT", [cli.ServerId!.Value.ToString()], timeout);
                    Console.WriteLine($"server {cli.ServerId}: {data}");
                    return status == "OK" ? 0 : 1;
                }
            default:
                return await StatusAsync(conn, csb, cli.ServerId, timeout);
        }
    }

    static async Task<NpgsqlConnection> OpenAsync(NpgsqlConnectionStringBuilder csb, CollectorSettings settings)
    {
        try
        {
            using var cts = PgSession.Timeout(settings.ConnectTimeout + settings.ConnectTimeout);
            return await PgSession.OpenAsync(csb, cts.Token);
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            throw new StartupException($"cannot connect to the repository {Dsn.Describe(csb)}: {PgSession.Describe(e)}");
        }
    }

    static async Task<int> StatusAsync(NpgsqlConnection conn, NpgsqlConnectionStringBuilder csb, int? only, TimeSpan timeout)
    {
        var rows = new List<(int Id, string Alias, string Server, DateTimeOffset? Last, string? Error, int Frequency)>();
        var sql = await RepositoryCheck.PowaOfAsync(conn, csb, CancellationToken.None);
        await using (var cmd = new NpgsqlCommand(sql.ServerStatuses, conn))
        {
            cmd.Parameters.Add(new() { Value = (object?)only ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Integer });
            await using var r = await cmd.ExecuteReaderAsync();
            while (await r.ReadAsync())
                rows.Add((r.GetInt32(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetFieldValue<DateTimeOffset>(3),
                    r.IsDBNull(4) ? null : r.GetString(4), r.GetInt32(5)));
        }
        if (only is { } id && rows.Count == 0)
        {
            Console.Error.WriteLine($"powa-cluster: server {id} is not registered in powa_servers");
            return 1;
        }
        var statuses = rows.Count == 0
            ? new Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)>()
            : await ControlClient.ClusterStatusAsync(conn, csb, rows.Select(r => r.Id).ToList(), timeout);
        Console.WriteLine($"{"srvid",5}  {"alias",-16} {"host:port",-22} {"node",-22} {"status",-32} {"last snapshot",-20} {"spooled",-28} last error");
        foreach (var r in rows)
        {
            var (status, node, backlog) = statuses.TryGetValue(r.Id, out var s) ? s : (r.Frequency > 0 ? "not collected" : "deactivated", "-", default);
            var last = r.Last?.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss") ?? "never";
            var error = r.Error is null ? "-" : r.Error.ReplaceLineEndings(" ");
            if (error.Length > 120) error = error[..117] + "...";
            Console.WriteLine($"{r.Id,5}  {Trim(r.Alias, 16),-16} {Trim(r.Server, 22),-22} {Trim(node, 22),-22} {Trim(status, 32),-32} {last,-20} {backlog,-28} {error}");
        }
        return 0;
    }

    static string Trim(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
