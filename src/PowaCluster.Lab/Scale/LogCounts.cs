using System.Text;
using PowaCluster.Lab.Demo;

namespace PowaCluster.Lab.Scale;

/// <summary>Counts, in each node's log, the lines that tell of a storm or of a node in trouble.</summary>
public static class LogCounts
{
    static readonly (string Label, Func<string, bool> Match)[] Kinds =
    [
        ("remote connect timeouts", l => l.Contains("cannot connect to", StringComparison.Ordinal) && l.Contains("timeout", StringComparison.OrdinalIgnoreCase)),
        ("remote connect failures", l => l.Contains("cannot connect to", StringComparison.Ordinal)),
        ("repository unreachable", l => l.Contains("no connection to repository server", StringComparison.Ordinal)),
        ("writer waits > 5 s", l => l.Contains("for a writer", StringComparison.Ordinal)),
        ("skipped snapshots", l => l.Contains("this one is skipped", StringComparison.Ordinal)),
        ("heartbeat sent late (> 2 s)", l => l.Contains("heartbeat was delayed", StringComparison.Ordinal)),
        ("heartbeat arrived late (> 2 s)", l => l.Contains("heartbeat interval is growing too large", StringComparison.Ordinal)),
        ("unreachable marks", l => l.Contains("as UNREACHABLE", StringComparison.Ordinal)),
        ("servers handed off", l => l.Contains("its shard is handed off", StringComparison.Ordinal)),
        ("hand-off timeouts", l => l.Contains("not stopped after", StringComparison.Ordinal) || l.Contains("stopped forcefully", StringComparison.Ordinal)),
        ("downed", l => l.Contains("This node was downed", StringComparison.Ordinal)),
    ];

    /// <summary>Akka's words for a heartbeat sent late (by the sender) and one that arrived late (the receiver's failure detector), in ms.</summary>
    static readonly System.Text.RegularExpressions.Regex HeartbeatGap =
        new(@"heartbeat was delayed\. Previous heartbeat was sent \[([0-9.]+)\] ms ago|heartbeat interval is growing too large for address \S+: ([0-9]+) millis");

    /// <summary>The line count of each node's log now: Table(since) counts only what comes after.</summary>
    public static Dictionary<int, int> Marks(ClusterNodes nodes) => nodes.Nodes.ToDictionary(n => n.Index, n => Lines(n).Count);

    static List<string> Lines(ClusterNodes.Node n)
    {
        try
        {
            using var s = new FileStream(n.LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var r = new StreamReader(s);
            var lines = new List<string>();
            while (r.ReadLine() is { } l) lines.Add(l);
            return lines;
        }
        catch (IOException) { return []; }
    }

    public static string Table(ClusterNodes nodes, Dictionary<int, int>? since)
    {
        var counts = nodes.Nodes.Select(n =>
        {
            var lines = Lines(n).Skip(since?.GetValueOrDefault(n.Index) ?? 0).ToList();
            return Kinds.Select(k => lines.Count(k.Match)).ToArray();
        }).ToList();
        // Akka warns when a node sends a heartbeat more than two intervals (2 s) after the previous one, and when one
        // arrives that long after the previous one, and says how long.
        var gaps = nodes.Nodes.Select(n => Lines(n).Skip(since?.GetValueOrDefault(n.Index) ?? 0)
            .Select(l => HeartbeatGap.Match(l)).Where(m => m.Success)
            .Select(m => double.Parse(m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture))
            .DefaultIfEmpty(0).Max()).ToList();
        var sb = new StringBuilder();
        sb.AppendLine($"{"log lines" + (since is null ? "" : " since the kill"),-34} " + string.Join(" ", nodes.Nodes.Select(n => $"{"node " + n.Index,8}")));
        for (var k = 0; k < Kinds.Length; k++)
            sb.AppendLine($"{Kinds[k].Label,-34} " + string.Join(" ", counts.Select(c => $"{c[k],8}")));
        sb.AppendLine($"{"longest heartbeat gap",-34} " + string.Join(" ", gaps.Select(g => $"{(g == 0 ? "<= 2 s" : $"{g / 1000:F1} s"),8}")));
        return sb.ToString().TrimEnd();
    }
}
