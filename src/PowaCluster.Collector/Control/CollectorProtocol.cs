using System.Globalization;
using System.Text;

namespace PowaCluster.Collector.Control;

/// <summary>A request received on channel powa_collector: COMMAND RESPONSE_CHANNEL ARGS...</summary>
public sealed record ControlRequest(string Command, string Channel, IReadOnlyList<string> Args)
{
    /// <summary>
    /// A channel of "-" (or none) means: do it, but do not answer. Nor is a reply sent on powa_collector itself:
    /// every collector would read it back as a request.
    /// </summary>
    public bool WantsReply => Channel != "-" && Channel != CollectorProtocol.Channel;
}

/// <summary>
/// powa-web's NOTIFY protocol, as powa-collector speaks it (README, "powa-web and the command line"). Pure functions:
/// parsing and formatting only, no I/O.
/// </summary>
public static class CollectorProtocol
{
    public const string Channel = "powa_collector";

    /// <summary>PostgreSQL's default limit is 8000 bytes for a NOTIFY payload.</summary>
    public const int MaxPayloadBytes = 8000;

    /// <summary>Space separated; powa-web sends a trailing space, and empty words are ignored.</summary>
    public static ControlRequest Parse(string payload)
    {
        var words = payload.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var command = words.Length > 0 ? words[0] : "";
        var channel = words.Length > 1 ? words[1] : "-";
        return new ControlRequest(command, channel, words.Skip(2).ToArray());
    }

    /// <summary>
    /// COMMAND STATUS DATA; a reply of 8000 bytes or more becomes COMMAND KO ANSWER TOO LONG; null when even
    /// that does not fit (a command word of nearly 8000 bytes).
    /// </summary>
    public static string? Reply(string command, string status, string data)
    {
        var payload = $"{command} {status} {data}";
        if (Encoding.UTF8.GetByteCount(payload) < MaxPayloadBytes) return payload;
        var tooLong = $"{command} KO ANSWER TOO LONG";
        return Encoding.UTF8.GetByteCount(tooLong) < MaxPayloadBytes ? tooLong : null;
    }

    /// <summary>FORCE_SNAPSHOT's argument, checked as powa-collector 1.3.1 does: one server id.</summary>
    public static (int SrvId, string? Error) ParseForceSnapshot(IReadOnlyList<string> args)
    {
        if (args.Count != 1) return (0, $"Command \"{PyRepr(args)}\" malformed");
        return int.TryParse(args[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var id)
            ? (id, null) : (0, $"invalid remote server id {args[0]}");
    }

    /// <summary>REFRESH_DB_CAT's arguments, checked as powa-collector 1.3.1 does: a server id, a count, that many databases.</summary>
    public static (int SrvId, IReadOnlyList<string> DbNames, string? Error) ParseRefreshDbCat(IReadOnlyList<string> args)
    {
        if (args.Count < 2) return (0, [], $"Command \"{PyRepr(args)}\" malformed");
        if (!int.TryParse(args[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var id))
            return (0, [], $"invalid remote server id {args[0]}");
        if (!int.TryParse(args[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
            return (0, [], $"invalid number of databases {args[1]}");
        var dbs = args.Skip(2).ToList();
        return n == dbs.Count ? (id, dbs, null) : (0, [], $"Caller asked for {n} db, but found {dbs.Count}: {PyRepr(dbs)}");
    }

    /// <summary>The reference's answer about a server it does not collect.</summary>
    public static string ServerNotFound(int srvid) => $"Server id {srvid} not found";

    /// <summary>A list of strings as Python prints it (the reference's error texts quote its arguments so).</summary>
    static string PyRepr(IEnumerable<string> items) => "[" + string.Join(", ", items.Select(s =>
        s.Contains('\'') && !s.Contains('"') ? $"\"{s.Replace("\\", "\\\\")}\""
        : $"'{s.Replace("\\", "\\\\").Replace("'", "\\'")}'")) + "]";

    /// <summary>{"1": "running", "2": "stopped"}: the layout of Python's json.dumps, which powa-web was written against.</summary>
    public static string WorkersJson(IEnumerable<KeyValuePair<int, string>> statuses)
    {
        var sb = new StringBuilder("{");
        var first = true;
        foreach (var (srvid, status) in statuses.OrderBy(s => s.Key))
        {
            if (!first) sb.Append(", ");
            first = false;
            sb.Append('"').Append(srvid).Append("\": ").Append(JsonString(status));
        }
        return sb.Append('}').ToString();
    }

    /// <summary>
    /// powa-cluster's own CLUSTER_STATUS answer, compact so that about 200 servers fit in a NOTIFY:
    /// {"nodes": ["akka.tcp://...", ...], "servers": {"1": [0, "running"], ...}} (node index, status); a server
    /// with spooled snapshots on its node has three more: [0, "running", 12, 6291456, 65] (snapshots, bytes,
    /// age of the oldest in seconds).
    /// </summary>
    public static string ClusterStatusJson(IEnumerable<(int SrvId, string Status, string? Node)> servers) =>
        ClusterStatusJson(servers.Select(s => (s.SrvId, s.Status, s.Node, new SpoolBacklog(0, 0, 0))));

    public static string ClusterStatusJson(IEnumerable<(int SrvId, string Status, string? Node, SpoolBacklog Backlog)> servers)
    {
        var list = servers.OrderBy(s => s.SrvId).ToList();
        var nodes = list.Select(s => s.Node ?? "").Distinct().ToList();
        var sb = new StringBuilder("{\"nodes\": [");
        sb.AppendJoin(", ", nodes.Select(JsonString)).Append("], \"servers\": {");
        sb.AppendJoin(", ", list.Select(s => $"\"{s.SrvId}\": [{nodes.IndexOf(s.Node ?? "")}, {JsonString(s.Status)}" +
                                             (s.Backlog.Snapshots > 0 ? $", {s.Backlog.Snapshots}, {s.Backlog.Bytes}, {s.Backlog.OldestAgeSeconds}]" : "]")));
        return sb.Append("}}").ToString();
    }

    /// <summary>A JSON string as json.dumps writes it by default: \" \\ \n..., and everything outside ASCII as \uXXXX.</summary>
    static string JsonString(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || c > 0x7f) sb.Append("\\u").Append(((int)c).ToString("x4"));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }
}

/// <summary>A server's spooled snapshots on its node (powa-cluster status shows them).</summary>
public readonly record struct SpoolBacklog(int Snapshots, long Bytes, long OldestAgeSeconds)
{
    public static SpoolBacklog Of(int snapshots, long bytes, DateTimeOffset? oldest, DateTimeOffset now) =>
        new(snapshots, bytes, oldest is { } o ? Math.Max(0, (long)(now - o).TotalSeconds) : 0);

    /// <summary>"12 (6.0 MB, oldest 65 s)", or "-".</summary>
    public override string ToString() => Snapshots == 0 ? "-" :
        $"{Snapshots} ({Bytes / 1048576.0:F1} MB, oldest {(OldestAgeSeconds < 120 ? $"{OldestAgeSeconds} s" : OldestAgeSeconds < 7200 ? $"{OldestAgeSeconds / 60} min" : $"{OldestAgeSeconds / 3600} h")})";
}
