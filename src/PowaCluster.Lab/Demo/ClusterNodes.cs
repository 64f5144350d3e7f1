using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;
using PowaCluster.Lab.Embedded;

namespace PowaCluster.Lab.Demo;

/// <summary>
/// N powa-cluster run processes on loopback forming one cluster with static seeds (the first two nodes),
/// each with its HTTP endpoint; their output goes to a log file each. Used by the demo and the tests.
/// </summary>
public sealed class ClusterNodes : IAsyncDisposable
{
    public sealed record Node(int Index, string Address, int HttpPort, string LogFile)
    {
        internal OurCollector Process { get; init; } = null!;
        internal Launch How { get; init; } = null!;
        public string Name => $"node {Index} ({Address})";
        public int? ExitCode => Process.ExitCode;
    }

    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };
    readonly List<Node> _nodes = [];
    public IReadOnlyList<Node> Nodes => _nodes;

    /// <summary>The cluster's throwaway CA and node certificates (mutual TLS between the nodes, as in production).</summary>
    LabCertificates? _certificates;

    /// <summary>The cluster's CA and node certificates (null when the settings said Tls__Mode).</summary>
    public LabCertificates? Certificates => _certificates;

    /// <summary>host:port of the seed nodes every node was given.</summary>
    public IReadOnlyList<string> Seeds { get; private set; } = [];

    /// <summary>
    /// Starts the nodes, ExpectedNodes = count unless the settings say; settings go to every node's environment
    /// (PowaCluster__Name=value). Each node gets a
    /// certificate of a throwaway CA (cluster TLS, the default of a multi-node cluster) unless the settings
    /// say Tls__Mode.
    /// </summary>
    /// <param name="buildDirectory">the build the nodes run (powa-lab rollout --from); this one by default</param>
    public static ClusterNodes Start(NpgsqlConnectionStringBuilder repo, int count, int poolSize, bool debug,
        IReadOnlyDictionary<string, string>? settings = null, string? logDirectory = null, string? buildDirectory = null)
    {
        var ports = FreePorts(count * 2);
        var seeds = ports.Take(Math.Min(2, count)).Select(p => $"127.0.0.1:{p}").ToList();
        var dir = logDirectory ?? Path.GetTempPath();
        var env = (settings ?? new Dictionary<string, string>()).ToDictionary(kv => $"PowaCluster__{kv.Key}", kv => kv.Value);
        // Started together: the first allocation waits for all of them (each takes its share, nothing moves after).
        env.TryAdd("PowaCluster__ExpectedNodes", count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var nodes = new ClusterNodes { Seeds = seeds };
        if (!env.ContainsKey("PowaCluster__Tls__Mode")) nodes._certificates = LabCertificates.Create("powa-cluster demo CA");
        for (var i = 0; i < count; i++)
        {
            var nodeEnv = new Dictionary<string, string>(env);
            if (nodes._certificates is { } certs)
                foreach (var kv in certs.Environment($"node{i + 1}")) nodeEnv[kv.Key] = kv.Value;
            // A spool of the node's own that outlives a restart of its process (Restart), removed with the nodes.
            if (!nodeEnv.ContainsKey("PowaCluster__SpoolDirectory"))
            {
                var spool = Directory.CreateTempSubdirectory($"powa-cluster-spool-node{i + 1}-").FullName;
                nodes._spools.Add(spool);
                nodeEnv["PowaCluster__SpoolDirectory"] = spool;
            }
            var log = Path.Combine(dir, $"powa-cluster-{Environment.ProcessId}-node{i + 1}.log");
            var args = new List<string> { "--cluster-host", "127.0.0.1", "--cluster-port", ports[i].ToString(), "--http-port", ports[count + i].ToString() };
            foreach (var s in seeds) { args.Add("--seed"); args.Add(s); }
            var launch = new Launch(repo, poolSize, debug, args, nodeEnv);
            var p = launch.Start($"node {i + 1}", log, buildDirectory);
            nodes._nodes.Add(new Node(i + 1, $"127.0.0.1:{ports[i]}", ports[count + i], log) { Process = p, How = launch });
        }
        return nodes;
    }

    readonly List<string> _spools = [];

    /// <summary>The spool directory ClusterNodes made for a node (null when the settings named one).</summary>
    public string? SpoolDirectory(Node n) => _spools.FirstOrDefault(d => Path.GetFileName(d).StartsWith($"powa-cluster-spool-node{n.Index}-", StringComparison.Ordinal));

    /// <summary>How a node's process is started: the same again when it restarts.</summary>
    internal sealed record Launch(NpgsqlConnectionStringBuilder Repo, int PoolSize, bool Debug, IReadOnlyList<string> Args,
        IReadOnlyDictionary<string, string> Env)
    {
        public OurCollector Start(string name, string log, string? buildDirectory) =>
            OurCollector.StartRun(Repo, PoolSize, Debug, Args, Env, name, log, buildDirectory);
    }

    /// <summary>
    /// Starts a node whose process has exited again, with its address, settings, certificate and spool, from
    /// buildDirectory (this build when null); its output goes to a new log file.
    /// </summary>
    public Node Restart(Node n, string? buildDirectory, string logFile)
    {
        if (n.ExitCode is null) throw new InvalidOperationException($"{n.Name} still runs");
        var i = _nodes.IndexOf(n);
        var again = n with { LogFile = logFile, Process = n.How.Start($"node {n.Index}", logFile, buildDirectory), How = n.How };
        _nodes[i] = again;
        _exited.Add(n);
        Restarts++;
        return again;
    }

    readonly List<Node> _exited = [];

    /// <summary>How many times a node was started again (Restart).</summary>
    public int Restarts { get; private set; }

    /// <summary>Distinct free loopback ports, held open together while they are picked.</summary>
    public static List<int> FreePorts(int n)
    {
        var listeners = Enumerable.Range(0, n).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        foreach (var l in listeners) l.Start();
        var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToList();
        foreach (var l in listeners) l.Stop();
        return ports;
    }

    /// <summary>GET a path (/ready by default) of a node's HTTP endpoint: (HTTP status, body); (0, error) when nothing answers.</summary>
    public static async Task<(int Status, string Body)> GetAsync(Node n, string path = "/ready")
    {
        try
        {
            using var r = await Http.GetAsync($"http://127.0.0.1:{n.HttpPort}{path}");
            return ((int)r.StatusCode, await r.Content.ReadAsStringAsync());
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return (0, e.Message);
        }
    }

    /// <summary>Waits until every node that runs answers 200 on /ready.</summary>
    public async Task WaitReadyAsync(TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        foreach (var n in _nodes.Where(n => n.ExitCode is null))
        {
            while (true)
            {
                if (n.ExitCode is { } code)
                    throw new InvalidOperationException($"{n.Name} exited with code {code} before it was ready; see {n.LogFile}");
                var (status, body) = await GetAsync(n);
                if (status == 200) break;
                if (sw.Elapsed > timeout)
                    throw new TimeoutException($"{n.Name} not ready after {timeout.TotalSeconds:F0} s: {body.ReplaceLineEndings(" ")}; see {n.LogFile}");
                await Task.Delay(300);
            }
        }
    }

    public void Kill(Node n) => n.Process.Kill();

    public Task<int?> TerminateAsync(Node n, TimeSpan timeout) => n.Process.TerminateAsync(timeout);

    public async ValueTask DisposeAsync()
    {
        foreach (var n in _nodes.Concat(_exited)) await n.Process.DisposeAsync();
        _certificates?.Dispose();
        foreach (var d in _spools)
            try { Directory.Delete(d, recursive: true); } catch (IOException) { /* a temporary directory */ }
    }
}
