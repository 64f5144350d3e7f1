using System.Text.Json;
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
    const int StatusRange = 50;

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
                var (status, data) = await AskAsync(conn, csb, "RELOAD", [], timeout);
                Console.WriteLine(status == "OK" ? "reload done" : $"reload failed: {data}");
                return status == "OK" ? 0 : 1;
            }
            case "snapshot":
            {
                var (status, data) = await AskAsync(conn, csb, "FORCE_SNAPSHOT", [cli.ServerId!.Value.ToString()], timeout);
                Console.WriteLine(data);
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

    /// <summary>LISTEN on a channel of our own, NOTIFY powa_collector, wait for the one answer.</summary>
    static async Task<(string Status, string Data)> AskAsync(NpgsqlConnection conn, NpgsqlConnectionStringBuilder csb,
        string command, IReadOnlyList<string> args, TimeSpan timeout)
    {
        var channel = $"powa_cluster_cli_{Environment.ProcessId}_{Guid.NewGuid():N}"[..40];
        string? reply = null;
        void OnNotification(object _, NpgsqlNotificationEventArgs e) { if (e.Channel == channel) reply = e.Payload; }
        conn.Notification += OnNotification;
        try
        {
            await PgSession.ExecAsync(conn, $"LISTEN {channel}", CancellationToken.None);
            await using (var cmd = new NpgsqlCommand("SELECT pg_notify($1, $2)", conn))
            {
                cmd.Parameters.Add(new() { Value = CollectorProtocol.Channel });
                cmd.Parameters.Add(new() { Value = string.Join(' ', new[] { command, channel }.Concat(args)) + " " });
                await cmd.ExecuteNonQueryAsync();
            }
            var deadline = DateTime.UtcNow + timeout;
            while (reply is null)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                    throw new StartupException($"no collector answered {command} within {timeout.TotalSeconds:F0} s on the repository {Dsn.Describe(csb)}: is powa-cluster running?");
                // Whole milliseconds, at least 1: Npgsql takes 0 to mean "wait forever".
                await conn.WaitAsync((int)Math.Clamp(Math.Ceiling(left.TotalMilliseconds), 1, 500));
            }
            await PgSession.ExecAsync(conn, $"UNLISTEN {channel}", CancellationToken.None);
        }
        finally { conn.Notification -= OnNotification; }
        // COMMAND STATUS DATA
        var rest = reply[(command.Length + 1)..];
        var space = rest.IndexOf(' ');
        var status = space < 0 ? rest : rest[..space];
        var data = space < 0 ? "" : rest[(space + 1)..];
        if (status == "ERROR") throw new StartupException($"the collector refused {command}: {data} (the repository user needs pg_signal_backend)");
        return (status, data);
    }

    static async Task<int> StatusAsync(NpgsqlConnection conn, NpgsqlConnectionStringBuilder csb, int? only, TimeSpan timeout)
    {
        var rows = new List<(int Id, string Alias, string Server, DateTimeOffset? Last, string? Error, int Frequency)>();
        await using (var cmd = new NpgsqlCommand(
            "SELECT s.id, coalesce(s.alias, ''), s.hostname || ':' || s.port, " +
            "CASE WHEN m.snapts = '-infinity' THEN NULL ELSE m.snapts END, m.errors[array_upper(m.errors, 1)], s.frequency " +
            "FROM public.powa_servers s LEFT JOIN public.powa_snapshot_metas m ON m.srvid = s.id " +
            "WHERE s.id > 0 AND ($1::int IS NULL OR s.id = $1) ORDER BY s.id", conn))
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
        var statuses = new Dictionary<int, (string Status, string Node)>();
        foreach (var chunk in rows.Chunk(StatusRange))
        {
            var (status, data) = await AskAsync(conn, csb, "CLUSTER_STATUS", [chunk[0].Id.ToString(), chunk[^1].Id.ToString()], timeout);
            if (status != "OK") throw new StartupException($"CLUSTER_STATUS failed: {data}");
            using var doc = JsonDocument.Parse(data);
            var nodes = doc.RootElement.GetProperty("nodes").EnumerateArray().Select(n => n.GetString() ?? "").ToList();
            foreach (var s in doc.RootElement.GetProperty("servers").EnumerateObject())
                statuses[int.Parse(s.Name)] = (s.Value[1].GetString() ?? "", NodeName(nodes[s.Value[0].GetInt32()]));
        }
        Console.WriteLine($"{"srvid",5}  {"alias",-16} {"host:port",-22} {"node",-22} {"status",-32} {"last snapshot",-20} last error");
        foreach (var r in rows)
        {
            var (status, node) = statuses.TryGetValue(r.Id, out var s) ? s : (r.Frequency > 0 ? "not collected" : "deactivated", "-");
            var last = r.Last?.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss") ?? "never";
            var error = r.Error is null ? "-" : r.Error.ReplaceLineEndings(" ");
            if (error.Length > 120) error = error[..117] + "...";
            Console.WriteLine($"{r.Id,5}  {Trim(r.Alias, 16),-16} {Trim(r.Server, 22),-22} {Trim(node, 22),-22} {Trim(status, 32),-32} {last,-20} {error}");
        }
        return 0;
    }

    /// <summary>akka.tcp://powa-cluster@10.0.0.5:4053 -> 10.0.0.5:4053: every node has the same system name.</summary>
    static string NodeName(string address)
    {
        var at = address.IndexOf('@');
        return address.Length == 0 ? "-" : at >= 0 ? address[(at + 1)..] : address;
    }

    static string Trim(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
