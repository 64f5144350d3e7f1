using System.Globalization;
using PowaCluster.Lab.Bench;
using PowaCluster.Lab.Demo;

namespace PowaCluster.Lab.Scale;

/// <summary>One look at a node: servers it holds (its /ready), its remote connections (/proc), memory and CPU.</summary>
public sealed record NodeSample(int Node, bool Alive, int? Held, int RemoteConnections, long RssBytes, TimeSpan Cpu);

/// <summary>
/// Reads what a cluster node holds and uses, from outside: /ready says how many servers the node collects; the
/// node's established TCP connections to the remotes' ports are counted from /proc (its socket inodes, matched
/// in /proc/net/tcp and tcp6), so that no query on the remotes is needed.
/// </summary>
public static class NodeProbe
{
    public static async Task<NodeSample> SampleAsync(ClusterNodes.Node n, IReadOnlySet<int> remotePorts)
    {
        var alive = n.ExitCode is null;
        int? held = null;
        if (alive)
        {
            var (status, body) = await ClusterNodes.GetAsync(n);
            if (status is 200 or 503) held = ServersLine(body);
        }
        var pid = n.Process.Pid;
        var (rss, _) = alive ? ProcessProbe.Memory(pid) : (0, 0);
        return new NodeSample(n.Index, alive, held, alive ? Connections(pid, remotePorts) : 0, rss, n.Process.CpuTime);
    }

    /// <summary>The "servers: N" line of /ready; null when the node does not say.</summary>
    public static int? ServersLine(string body)
    {
        foreach (var line in body.Split('\n'))
            if (line.StartsWith("servers: ", StringComparison.Ordinal) &&
                int.TryParse(line["servers: ".Length..].Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
                return n;
        return null;
    }

    /// <summary>Established TCP connections of process <paramref name="pid"/> to one of <paramref name="ports"/> (0 when unreadable).</summary>
    public static int Connections(int pid, IReadOnlySet<int> ports)
    {
        var inodes = new HashSet<long>();
        try
        {
            foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
            {
                var target = new FileInfo(fd).LinkTarget;
                if (target is not null && target.StartsWith("socket:[", StringComparison.Ordinal) &&
                    long.TryParse(target.AsSpan(8, target.Length - 9), out var inode))
                    inodes.Add(inode);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        var count = 0;
        foreach (var table in new[] { $"/proc/{pid}/net/tcp", $"/proc/{pid}/net/tcp6" })
        {
            IEnumerable<string> lines;
            try { lines = File.ReadLines(table).Skip(1).ToList(); }
            catch (IOException) { continue; }
            foreach (var line in lines)
            {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length < 10 || f[3] != "01") continue;
                var remote = f[2];
                var port = int.Parse(remote[(remote.LastIndexOf(':') + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if (ports.Contains(port) && long.TryParse(f[9], out var inode) && inodes.Contains(inode)) count++;
            }
        }
        return count;
    }
}
