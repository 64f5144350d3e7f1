using System.Text.Json;
using Npgsql;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Control;
using PowaCluster.Collector.Postgres;
using PowaCluster.Host.Startup;

namespace PowaCluster.Host.Cli;

/// <summary>
/// The client side of the collector protocol, as powa-web speaks it: NOTIFY powa_collector with a request,
/// wait for the one answer on a channel of our own. Used by the status / reload / snapshot commands (and the lab).
/// </summary>
public static class ControlClient
{
    /// <summary>Servers asked about per CLUSTER_STATUS request: each answer must stay under 8000 bytes.</summary>
    const int StatusRange = 50;

    /// <summary>LISTEN on a channel of our own, NOTIFY powa_collector, wait for the one answer.</summary>
    public static async Task<(string Status, string Data)> AskAsync(NpgsqlConnection conn, NpgsqlConnectionStringBuilder csb,
        string command, IReadOnlyList<string> args, TimeSpan timeout)
    {
        var channel = $"powa_cluster_cli_{Environment.ProcessId}_{Guid.NewGuid():N}"[..40];
        string? reply = null;
        // Only an answer to this command counts: anyone may NOTIFY any channel, and a stray payload is no answer.
        void OnNotification(object _, NpgsqlNotificationEventArgs e)
        {
            if (e.Channel == channel && e.Payload.StartsWith(command + " ", StringComparison.Ordinal)) reply ??= e.Payload;
        }
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
            var waited = System.Diagnostics.Stopwatch.StartNew(); // elapsed time, not the time of day
            while (reply is null)
            {
                var left = timeout - waited.Elapsed;
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
        // What the collector says comes from the repository, remote servers included: printed without control characters.
        var data = space < 0 ? "" : LogText.OneLine(rest[(space + 1)..], 100_000);
        if (status == "ERROR" && data == "Permission denied")
            throw new StartupException($"the collector refused {command}: {data} (the repository user needs pg_signal_backend, or on PoWA 5 one of powa's roles)");
        return (status, data);
    }

    /// <summary>Status and node of each server, from the cluster (CLUSTER_STATUS, a range of srvids at a time).</summary>
    public static async Task<Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)>> ClusterStatusAsync(NpgsqlConnection conn,
        NpgsqlConnectionStringBuilder csb, IReadOnlyList<int> srvids, TimeSpan timeout)
    {
        var statuses = new Dictionary<int, (string Status, string Node, SpoolBacklog Backlog)>();
        foreach (var chunk in srvids.Order().Chunk(StatusRange))
        {
            var (status, data) = await AskAsync(conn, csb, "CLUSTER_STATUS", [chunk[0].ToString(), chunk[^1].ToString()], timeout);
            if (status != "OK") throw new StartupException($"CLUSTER_STATUS failed: {data}");
            using var doc = JsonDocument.Parse(data);
            var nodes = doc.RootElement.GetProperty("nodes").EnumerateArray().Select(n => n.GetString() ?? "").ToList();
            foreach (var s in doc.RootElement.GetProperty("servers").EnumerateObject())
                statuses[int.Parse(s.Name)] = (s.Value[1].GetString() ?? "", NodeName(nodes[s.Value[0].GetInt32()]),
                    s.Value.GetArrayLength() >= 5 ? new SpoolBacklog(s.Value[2].GetInt32(), s.Value[3].GetInt64(), s.Value[4].GetInt64()) : default);
        }
        return statuses;
    }

    /// <summary>akka.tcp://powa-cluster@10.0.0.5:4053 -> 10.0.0.5:4053: every node has the same system name.</summary>
    public static string NodeName(string address)
    {
        var at = address.IndexOf('@');
        return address.Length == 0 ? "-" : at >= 0 ? address[(at + 1)..] : address;
    }
}
