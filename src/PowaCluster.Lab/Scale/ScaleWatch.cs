using System.Text;
using PowaCluster.Lab.Demo;

namespace PowaCluster.Lab.Scale;

/// <summary>
/// The nodes sampled every few seconds (NodeProbe): servers held over time, from the first sample where every
/// server is allocated; remote connections; peak memory; CPU.
/// </summary>
public sealed class ScaleWatch(ClusterNodes nodes, IReadOnlySet<int> remotePorts, int servers)
{
    readonly List<(TimeSpan At, NodeSample[] Samples)> _samples = [];

    /// <summary>When every server was first held by some node (sum of the nodes' counts), and the counts then.</summary>
    public (TimeSpan At, int[] Held)? FirstAllocation { get; private set; }

    public async Task SampleAsync(TimeSpan at)
    {
        var samples = await Task.WhenAll(nodes.Nodes.Select(n => NodeProbe.SampleAsync(n, remotePorts)));
        _samples.Add((at, samples));
        if (FirstAllocation is null && samples.All(s => s.Alive) && samples.Sum(Held) >= servers)
            FirstAllocation = (at, samples.Select(Held).ToArray());
    }

    /// <summary>Servers a node holds: what its /ready says, or else its remote connections.</summary>
    static int Held(NodeSample s) => s.Held ?? s.RemoteConnections;

    public int LastHeld(int node) => _samples.Count == 0 ? 0 : Held(_samples[^1].Samples.First(s => s.Node == node));

    /// <summary>
    /// From the first allocation on, while every node runs: the largest deviation of a node's servers from the
    /// mean, in percent of the mean.
    /// </summary>
    public double MaxSpreadPercent
    {
        get
        {
            if (FirstAllocation is not { } first) return double.PositiveInfinity;
            var worst = 0.0;
            foreach (var (at, samples) in _samples.Where(s => s.At >= first.At && s.Samples.All(x => x.Alive)))
            {
                var mean = samples.Average(Held);
                if (mean <= 0) continue;
                worst = Math.Max(worst, samples.Max(s => Math.Abs(Held(s) - mean)) / mean * 100);
            }
            return worst;
        }
    }

    public bool Pass => FirstAllocation is not null && MaxSpreadPercent <= 25;

    /// <summary>Per node: servers held (at first allocation, min, max, last), remote connections, peak RSS, CPU.</summary>
    public string NodeTable(TimeSpan? since = null)
    {
        var from = since ?? TimeSpan.Zero;
        var rows = _samples.Where(s => s.At >= from).ToList();
        var sb = new StringBuilder();
        sb.AppendLine($"{"node",-6} {"alive",-5} {"at 1st alloc",12} {"min",5} {"max",5} {"last",5} {"remote conns",12} {"peak RSS",9} {"CPU",8} {"CPU %",6}");
        if (rows.Count == 0) return sb.ToString();
        foreach (var n in nodes.Nodes)
        {
            var s = rows.Select(r => r.Samples.First(x => x.Node == n.Index)).ToList();
            var alive = s.Where(x => x.Alive).ToList();
            // Held from the first allocation on (before it, the nodes wait for each other and hold nothing).
            var held = since is null && FirstAllocation is { } fa0
                ? rows.Where(r => r.At >= fa0.At).Select(r => r.Samples.First(x => x.Node == n.Index)).Where(x => x.Alive).ToList()
                : alive;
            var first = FirstAllocation is { } f && since is null ? f.Held[n.Index - 1].ToString() : "-";
            // CPU while the node ran (a killed node's last reading is of a process that is gone).
            var cpu = alive.Count > 1 ? alive[^1].Cpu - alive[0].Cpu : TimeSpan.Zero;
            var span = alive.Count > 1 ? rows[s.LastIndexOf(alive[^1])].At - rows[s.IndexOf(alive[0])].At : TimeSpan.Zero;
            sb.AppendLine($"{n.Index,-6} {(s[^1].Alive ? "yes" : "no"),-5} {first,12} {Min(held, Held),5} {Max(held, Held),5} " +
                          $"{(s[^1].Alive ? Held(s[^1]).ToString() : "-"),5} {(alive.Count > 0 ? alive[^1].RemoteConnections : 0),12} " +
                          $"{alive.Select(x => x.RssBytes).DefaultIfEmpty(0).Max() / 1048576.0,6:F0} MB {cpu.TotalSeconds,6:F1} s " +
                          $"{(span.TotalSeconds > 0 ? cpu.TotalSeconds / span.TotalSeconds * 100 : 0),5:F0}%");
        }
        if (since is null)
            sb.Append(FirstAllocation is { } fa
                ? $"every server allocated {fa.At.TotalSeconds:F0} s after the start; largest deviation of a node from the mean since: {MaxSpreadPercent:F1} %"
                : "the servers were never all allocated");
        return sb.ToString();
    }

    /// <summary>
    /// Each node's peak resident memory against README's limit for the most servers it held (PodMemory), from
    /// <paramref name="since"/> on; the line and whether every node kept under it.
    /// </summary>
    public (string Line, bool Pass) Memory(TimeSpan? since = null)
    {
        var rows = _samples.Where(s => s.At >= (since ?? TimeSpan.Zero)).ToList();
        var parts = new List<string>();
        var pass = true;
        foreach (var n in nodes.Nodes)
        {
            var alive = rows.Select(r => r.Samples.First(x => x.Node == n.Index)).Where(x => x.Alive).ToList();
            if (alive.Count == 0) continue;
            var peak = alive.Max(x => x.RssBytes) / 1048576.0;
            var held = alive.Max(Held);
            var limit = PodMemory.LimitForHeld(held);
            pass &= peak <= limit;
            parts.Add($"node {n.Index} {peak:F0} MiB at most {held} servers (limit {limit} MiB)");
        }
        return ($"memory against README's formula ({PodMemory.BaseMiB} MiB + {PodMemory.PerServerMiB} MiB per server + " +
                $"{PodMemory.StageMiB} MiB of stages): {string.Join("; ", parts)}", pass);
    }

    static string Min(List<NodeSample> s, Func<NodeSample, int> f) => s.Count == 0 ? "-" : s.Min(f).ToString();
    static string Max(List<NodeSample> s, Func<NodeSample, int> f) => s.Count == 0 ? "-" : s.Max(f).ToString();
}
