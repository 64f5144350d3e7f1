using System.Text;
using System.Text.RegularExpressions;

namespace PowaCluster.Lab.Rollout;

/// <summary>
/// Per server whose roll has landed, the gaps between its snapshots in the roll's window (edges included): lost
/// intervals and doubles. A server whose backlog the repository has not taken yet is not counted, only said.
/// </summary>
public sealed record RolloutFigures(int Servers, int Landed, int ServersWithLoss, int Lost, int Doubles, double LongestGap, int LongestGapSrvId)
{
    /// <param name="landed">the servers with a snapshot taken after the window stored: the window is complete (a server's snapshots are stored in order)</param>
    public static RolloutFigures From(IReadOnlyList<int> ids, IReadOnlySet<int> landed, Dictionary<int, List<DateTime>> times, DateTime from, DateTime to,
        TimeSpan frequency)
    {
        var f = frequency.TotalSeconds;
        int lost = 0, doubles = 0, withLoss = 0, longestId = 0;
        var longest = 0.0;
        foreach (var id in ids)
        {
            if (!landed.Contains(id)) continue; // its backlog may still be on its way: neither lost nor whole
            var t = times.GetValueOrDefault(id) ?? [];
            var marks = t.Prepend(from).Append(to).ToList();
            var mine = 0;
            for (var i = 1; i < marks.Count; i++)
            {
                var gap = (marks[i] - marks[i - 1]).TotalSeconds;
                var edge = i == 1 || i == marks.Count - 1;
                if (gap > 1.5 * f) mine += (int)Math.Round(gap / f) - 1;
                if (!edge && gap < 0.5 * f) doubles++;
                if (!edge && gap > longest) (longest, longestId) = (gap, id);
            }
            lost += mine;
            if (mine > 0) withLoss++;
        }
        return new(ids.Count, ids.Count(landed.Contains), withLoss, lost, doubles, longest, longestId);
    }

    public string Table() => new StringBuilder()
        .AppendLine("| servers | landed (counted) | servers that lost intervals | intervals lost (gap > 1.5 F) | doubles (gap < 0.5 F) | longest gap |")
        .AppendLine("| --- | --- | --- | --- | --- | --- |")
        .Append($"| {Servers} | {Landed} | {ServersWithLoss} | {Lost} | {Doubles} | {LongestGap:F1} s (srvid {LongestGapSrvId}) |")
        .ToString();
}

/// <summary>Where the singletons ran, in turn, from every node's log (Akka's "ClusterSingletonManager state change [... -> Oldest]").</summary>
public sealed record SingletonMoves(IReadOnlyList<string> Fleet, IReadOnlyList<string> Shards)
{
    public int Moves => Math.Max(0, Math.Max(Fleet.Count, Shards.Count) - 1);

    static readonly Regex Oldest = new(@"^(\S+) INFO\s+\[(/user/fleet-coordinator|/system/sharding/server-collectorCoordinator)\] ClusterSingletonManager state change \[\w+ -> Oldest\]");

    public static SingletonMoves Read(string logDir)
    {
        var events = Directory.GetFiles(logDir, "*.log*")
            .SelectMany(f => File.ReadLines(f).Select(l => Oldest.Match(l)).Where(m => m.Success)
                .Select(m => (Time: m.Groups[1].Value, Singleton: m.Groups[2].Value, Node: Path.GetFileName(f))))
            .OrderBy(e => e.Time, StringComparer.Ordinal).ToList();
        return new(
            [.. events.Where(e => e.Singleton == "/user/fleet-coordinator").Select(e => e.Node)],
            [.. events.Where(e => e.Singleton != "/user/fleet-coordinator").Select(e => e.Node)]);
    }

    /// <summary>Log lines of a message that could not be read (deserialized) by a node.</summary>
    public static int Unreadable(string logDir) => Directory.GetFiles(logDir, "*.log*")
        .Sum(f => File.ReadLines(f).Count(l => l.Contains("deserializ", StringComparison.OrdinalIgnoreCase)
            || l.Contains("SerializationException", StringComparison.Ordinal) || l.Contains("message manifest", StringComparison.Ordinal)));
}
