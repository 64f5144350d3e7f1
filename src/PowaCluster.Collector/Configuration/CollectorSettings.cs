namespace PowaCluster.Collector.Configuration;

/// <summary>
/// Everything a collector node needs to know. Bound from the "PowaCluster" section of
/// appsettings.json / environment variables (PowaCluster__WriterPoolSize=8), then overridden by the command line.
/// </summary>
public sealed class CollectorSettings
{
    public const string SectionName = "PowaCluster";

    /// <summary>Repository DSN (libpq URI, libpq key=value or Npgsql connection string).</summary>
    public string? RepositoryDsn { get; set; }

    /// <summary>Where <see cref="RepositoryDsn"/> came from, for error messages ("--repository", a file path...).</summary>
    public string RepositoryDsnSource { get; set; } = "";

    public bool Debug { get; set; }

    /// <summary>The log's format, one line per event: "plain" (the default) or "json" (one JSON object a line, for a log shipper).</summary>
    public string LogFormat { get; set; } = "plain";

    /// <summary>
    /// Repository connections (and concurrent snapshot transactions) per node. Two: a PoWA repository stores
    /// most snapshots per second on one or two connections and fewer on more (powa_take_snapshot's work
    /// contends; measured with powa-lab bench), and a second one keeps snapshots flowing while the other
    /// runs a long aggregation or purge.
    /// </summary>
    public int WriterPoolSize { get; set; } = 2;

    /// <summary>How often the FleetCoordinator re-reads powa_servers.</summary>
    public TimeSpan ResyncInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>An entity that hears nothing from the coordinator for this many resync intervals stops itself.</summary>
    public int EntityLeaseIntervals { get; set; } = 4;

    /// <summary>
    /// Memory of the node for staged snapshots (read off their remote, waiting for or in a writer), in bytes.
    /// A stage that does not fit writes the rest to a file in <see cref="StageDirectory"/>. A snapshot's size
    /// follows the remote's pg_stat_statements: about 2.3 MB for 2,600 entries on PoWA 5 (and 6 MB for a
    /// server's first, with its catalogs), so 64 MiB hold some 25 of them at once (more on smaller servers).
    /// </summary>
    public long StageMemoryBudget { get; set; } = 64L * 1024 * 1024;

    /// <summary>
    /// Snapshots of one server read and not yet stored (waiting for a writer, or being stored), at most. A
    /// server keeps reading at its due times while the repository is slow (a burst of new servers' first,
    /// catalog-heavy snapshots; a long aggregation) and its snapshots are stored later, in order, each with its
    /// own timestamp. Beyond the first, a snapshot is read ahead only while the node's stage memory, or else
    /// its stage files (<see cref="StageFileBudget"/>), have room.
    /// Beyond this many, ticks are skipped (logged). 1: one snapshot in flight per server, as the reference.
    /// </summary>
    public int MaxQueuedSnapshots { get; set; } = 6;

    /// <summary>
    /// Bytes of stage files (snapshots beyond the memory budget) beyond which no server reads ahead: what a
    /// slow repository may cost the node's disk, on top of one snapshot per server. 1 GiB.
    /// </summary>
    public long StageFileBudget { get; set; } = 1024L * 1024 * 1024;

    /// <summary>
    /// The most bytes one snapshot may hold (all its datasources, as read off the remote): a remote whose
    /// output is larger (huge query texts, a hostile function) gets its snapshot refused with the error in
    /// powa_snapshot_metas.errors, and writes at most this much to the node's disk. 512 MiB, some 200 times a
    /// large server's snapshot.
    /// </summary>
    public long MaxSnapshotBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Where stages beyond the memory budget are written; empty: a private directory under the system's temporary directory.</summary>
    public string? StageDirectory { get; set; }

    /// <summary>
    /// Where a node keeps the snapshots the repository cannot store (down, unreachable, timing out), to replay
    /// them in order with their own timestamps when it can: one file per snapshot, fsynced, in a subdirectory
    /// per repository. It must survive a restart of the process (not a tmpfs for that) and belong to this node
    /// alone (a lock file refuses a second process). Empty: $STATE_DIRECTORY/spool (systemd's StateDirectory),
    /// else $XDG_STATE_HOME/powa-cluster/spool, else ~/.local/state/powa-cluster/spool.
    /// </summary>
    public string? SpoolDirectory { get; set; }

    /// <summary>Bytes of spooled snapshots a node keeps at most; beyond, the oldest are dropped first (counted). 0: no spool. 1 GiB.</summary>
    public long SpoolMaxBytes { get; set; } = 1024L * 1024 * 1024;

    /// <summary>Age beyond which a spooled snapshot is dropped (counted): older history is of little use, and purged by powa. 24 h.</summary>
    public TimeSpan SpoolMaxAge { get; set; } = TimeSpan.FromHours(24);

    /// <summary>SpoolDirectory, or its default.</summary>
    public string SpoolDirectoryOrDefault => !string.IsNullOrWhiteSpace(SpoolDirectory) ? SpoolDirectory
        : Environment.GetEnvironmentVariable("STATE_DIRECTORY") is { Length: > 0 } state ? Path.Combine(state.Split(':')[0], "spool")
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_STATE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state"), "powa-cluster", "spool");

    /// <summary>
    /// TLS of the connections to the remote servers, as libpq's sslmode: disable, allow, prefer (libpq's default:
    /// TLS when the server offers it, its certificate not checked), require, verify-ca, verify-full (the
    /// certificate checked against RemoteSslRootCert, and for verify-full its name against powa_servers.hostname).
    /// </summary>
    public string RemoteSslMode { get; set; } = "prefer";

    /// <summary>The CA certificate(s) (PEM) that signed the remotes' server certificates (verify-ca, verify-full).</summary>
    public string? RemoteSslRootCert { get; set; }

    /// <summary>
    /// libpq's require_auth for the remotes: the authentication methods a remote may ask for (for example
    /// scram-sha-256: never a password in clear or as MD5, whoever answers). Empty: any.
    /// </summary>
    public string? RemoteRequireAuth { get; set; }

    /// <summary>The three settings above, checked (Validate).</summary>
    public RemoteSecurity RemoteSecurity { get; private set; } = RemoteSecurity.Default;

    /// <summary>Connection timeout, remote and repository.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Timeout of one remote step (a query, a COPY chunk read).</summary>
    public TimeSpan RemoteTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Timeout of one repository step (powa_take_snapshot may aggregate and purge).</summary>
    public TimeSpan RepositoryTimeout { get; set; } = TimeSpan.FromSeconds(300);

    /// <summary>First and last delay of the retry backoff after a remote error.</summary>
    public TimeSpan RetryMinDelay { get; set; } = TimeSpan.FromSeconds(2);
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Fixed for the life of a cluster: about ten per node of the largest cluster expected. A server's shard
    /// is its srvid modulo this number, so consecutive ids spread evenly.
    /// </summary>
    public int NumberOfShards { get; set; } = 100;

    /// <summary>How nodes find each other: "seeds" (static seed nodes; none = a one-node cluster) or "kubernetes".</summary>
    public string Discovery { get; set; } = DiscoveryModes.Seeds;

    /// <summary>Akka.Remote endpoint of this node: the address it binds. Port 0 picks a free port (one-node cluster).</summary>
    public string ClusterHost { get; set; } = "127.0.0.1";
    public int ClusterPort { get; set; }

    /// <summary>The address other nodes use to reach this one, when not ClusterHost (behind NAT; in Kubernetes, the pod IP).</summary>
    public string? ClusterPublicHost { get; set; }

    /// <summary>host:port of the seed nodes, the same list on every node; empty = a one-node cluster.</summary>
    public string[] Seeds { get; set; } = [];

    /// <summary>
    /// Split brain resolver (keep-majority): how long membership must stay unchanged, with a node unreachable,
    /// before the side in minority is downed. A dead node's servers move after about this plus failure detection.
    /// </summary>
    public TimeSpan StableAfter { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>On SIGTERM, how long a snapshot in flight may take to commit before the node's shards are handed off anyway.</summary>
    public TimeSpan HandOffTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Nodes a new cluster waits for before its first server is allocated, so that each node is handed its share
    /// once instead of the first node up taking everything and giving most of it away. 0: the number of Seeds
    /// (seed mode), Kubernetes:RequiredContactPoints (Kubernetes), 1 for a one-node cluster. Set it to the
    /// cluster's size (the StatefulSet's replicas). A node that joins later takes its share by rebalancing.
    /// </summary>
    public int ExpectedNodes { get; set; }

    /// <summary>How long a new cluster waits for ExpectedNodes before it allocates the servers to the nodes it has.</summary>
    public TimeSpan ExpectedNodesWait { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>ExpectedNodes, or its default when 0.</summary>
    public int ExpectedNodesOrDefault => ExpectedNodes > 0 ? ExpectedNodes
        : IsOneNode ? 1
        : Discovery == DiscoveryModes.Kubernetes ? Kubernetes.RequiredContactPoints
        : Seeds.Length;

    /// <summary>
    /// Remote connections a node opens per second at most; 0 (the default): derived from the servers waiting to
    /// connect and their frequency, so that a batch of them (a cold start, a failover, a rebalance) connects
    /// within a quarter of its shortest interval, at 5 to 100 per second. Each with jitter.
    /// </summary>
    public double ConnectRate { get; set; }

    /// <summary>Remote connections a node has in progress at once, at most (a hung one counts for ConnectTimeout / 2).</summary>
    public int MaxConcurrentConnects { get; set; } = 16;

    /// <summary>
    /// How often a node's writers VACUUM the repository's *_src_tmp tables while they store snapshots (each
    /// store deletes the rows it copied there: at high rates autovacuum falls behind, the tables bloat and every
    /// snapshot scans them). Zero: never (autovacuum alone).
    /// </summary>
    public TimeSpan StagingVacuumInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long another node may stay silent (no cluster heartbeat) before it is marked unreachable (Akka's
    /// acceptable-heartbeat-pause; Akka's own default, 3 s, marks a node busy for a few seconds on a loaded
    /// machine: powa-lab scale measured heartbeats 3.5 s apart on a saturated 2-core machine). A dead node's
    /// servers move after about this + StableAfter + 3 s.
    /// </summary>
    public TimeSpan HeartbeatPause { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>HTTP port of /healthz and /ready; null = no HTTP endpoint.</summary>
    public int? HttpPort { get; set; }

    /// <summary>Address the HTTP endpoint binds (0.0.0.0: every interface, as probes and load balancers need).</summary>
    public string HttpHost { get; set; } = "0.0.0.0";

    public KubernetesSettings Kubernetes { get; set; } = new();

    /// <summary>Mutual TLS between the nodes: on by default for a cluster of several nodes.</summary>
    public TlsSettings Tls { get; set; } = new();

    /// <summary>The settings of a node that is itself a whole cluster: no seed, no discovery.</summary>
    public bool IsOneNode => Discovery == DiscoveryModes.Seeds && Seeds.Length == 0;

    /// <summary>Whether the cluster endpoint binds a loopback address only (localhost, 127.0.0.0/8, ::1): nobody else can reach it.</summary>
    public bool ClusterOnLoopback =>
        ClusterHost.Equals("localhost", StringComparison.OrdinalIgnoreCase)
        || (System.Net.IPAddress.TryParse(ClusterHost, out var ip) && System.Net.IPAddress.IsLoopback(ip));

    public void Validate()
    {
        if (WriterPoolSize < 1) throw new ArgumentException("WriterPoolSize must be at least 1");
        if (LogFormat is not ("plain" or "json")) throw new ArgumentException($"LogFormat must be plain or json, not \"{LogFormat}\"");
        if (ResyncInterval < TimeSpan.FromSeconds(1)) throw new ArgumentException("ResyncInterval must be at least 1 second");
        if (StageMemoryBudget < 0) throw new ArgumentException("StageMemoryBudget must be 0 (always a file) or more bytes");
        if (MaxSnapshotBytes < 1024 * 1024) throw new ArgumentException("MaxSnapshotBytes must be at least 1 MiB (1048576 bytes)");
        if (MaxQueuedSnapshots < 1) throw new ArgumentException("MaxQueuedSnapshots must be at least 1");
        if (StageFileBudget < 0) throw new ArgumentException("StageFileBudget must be 0 (no read-ahead beyond the memory budget) or more bytes");
        if (SpoolMaxBytes < 0) throw new ArgumentException("SpoolMaxBytes must be 0 (no spool) or more bytes");
        if (SpoolMaxAge < TimeSpan.FromMinutes(1)) throw new ArgumentException("SpoolMaxAge must be at least 1 minute");
        if (NumberOfShards < 1) throw new ArgumentException("NumberOfShards must be at least 1");
        if (EntityLeaseIntervals < 2) throw new ArgumentException("EntityLeaseIntervals must be at least 2");
        Discovery = (Discovery ?? "").Trim().ToLowerInvariant();
        if (Discovery is not (DiscoveryModes.Seeds or DiscoveryModes.Kubernetes))
            throw new ArgumentException($"Discovery must be \"{DiscoveryModes.Seeds}\" or \"{DiscoveryModes.Kubernetes}\", not \"{Discovery}\"");
        if (ClusterPort is < 0 or > 65535) throw new ArgumentException("ClusterPort must be from 0 to 65535");
        if (HttpPort is < 1 or > 65535) throw new ArgumentException("HttpPort must be from 1 to 65535");
        if (StableAfter < TimeSpan.FromSeconds(1)) throw new ArgumentException("StableAfter must be at least 1 second");
        if (HandOffTimeout < TimeSpan.FromSeconds(1)) throw new ArgumentException("HandOffTimeout must be at least 1 second");
        if (ExpectedNodes < 0) throw new ArgumentException("ExpectedNodes must be 0 (derived) or a number of nodes");
        if (ExpectedNodesWait < TimeSpan.Zero) throw new ArgumentException("ExpectedNodesWait must not be negative");
        if (ConnectRate < 0) throw new ArgumentException("ConnectRate must be 0 (derived) or connections per second");
        if (MaxConcurrentConnects < 1) throw new ArgumentException("MaxConcurrentConnects must be at least 1");
        if (StagingVacuumInterval < TimeSpan.Zero) throw new ArgumentException("StagingVacuumInterval must be zero (never) or positive");
        if (HeartbeatPause < TimeSpan.FromSeconds(1)) throw new ArgumentException("HeartbeatPause must be at least 1 second");
        foreach (var seed in Seeds)
        {
            var colon = seed.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(seed[(colon + 1)..], out var port) || port is < 1 or > 65535)
                throw new ArgumentException($"a seed is host:port, not \"{seed}\"");
        }
        if (ClusterHost is "0.0.0.0" or "::" && string.IsNullOrWhiteSpace(ClusterPublicHost) && !IsOneNode)
            throw new ArgumentException($"ClusterHost {ClusterHost} binds every interface: set ClusterPublicHost to the address the other nodes reach this one on");
        if (Discovery == DiscoveryModes.Kubernetes)
        {
            if (Seeds.Length > 0) throw new ArgumentException("Seeds and Kubernetes discovery exclude each other");
            Kubernetes.Validate();
        }
        Tls.Validate(this);
        RemoteSecurity = RemoteSecurity.Parse(RemoteSslMode, RemoteSslRootCert, RemoteRequireAuth);
    }
}

public static class DiscoveryModes
{
    public const string Seeds = "seeds";
    public const string Kubernetes = "kubernetes";
}

/// <summary>
/// Joining the cluster in Kubernetes: the collector's pods are listed through the Kubernetes API and become
/// the seed nodes (KubernetesJoiner). The defaults match k8s/: pods labelled app=powa-cluster, a container
/// port named "remoting", the API and credentials Kubernetes gives every pod.
/// </summary>
public sealed class KubernetesSettings
{
    /// <summary>Replaces "{0}" in PodLabelSelector.</summary>
    public string ServiceName { get; set; } = "powa-cluster";

    /// <summary>Label selector of the collector's pods.</summary>
    public string PodLabelSelector { get; set; } = "app={0}";

    /// <summary>Namespace of the pods; empty: the pod's own (from its service account).</summary>
    public string? Namespace { get; set; }

    /// <summary>The API server's URL; empty: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, as in a pod.</summary>
    public string? ApiServer { get; set; }

    /// <summary>The service account's token, ca.crt and namespace files.</summary>
    public string ServiceAccountPath { get; set; } = "/var/run/secrets/kubernetes.io/serviceaccount";

    /// <summary>Name of the container port of Akka.Remote (its number must be ClusterPort).</summary>
    public string RemotingPortName { get; set; } = "remoting";

    /// <summary>Pods that must be listed before a new cluster is formed (a StatefulSet of 3: 2 is a majority).</summary>
    public int RequiredContactPoints { get; set; } = 2;

    /// <summary>How long the pod list must stay the same before the pods are used as seed nodes.</summary>
    public TimeSpan StableMargin { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A pod that is not a member after this long exits (code 1), to be started again.</summary>
    public TimeSpan JoinTimeout { get; set; } = TimeSpan.FromMinutes(2);

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ServiceName)) throw new ArgumentException("Kubernetes:ServiceName must be set");
        if (string.IsNullOrWhiteSpace(RemotingPortName)) throw new ArgumentException("Kubernetes:RemotingPortName must be set");
        if (RequiredContactPoints < 1) throw new ArgumentException("Kubernetes:RequiredContactPoints must be at least 1");
        if (JoinTimeout <= StableMargin) throw new ArgumentException("Kubernetes:JoinTimeout must be longer than Kubernetes:StableMargin");
    }
}
