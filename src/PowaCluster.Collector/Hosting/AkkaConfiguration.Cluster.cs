using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Hosting;

/// <summary>The node's cluster set-up (AkkaConfiguration.cs has the rest): membership, failure detection, the threads of Akka's internals, sharding.</summary>
public static partial class AkkaConfiguration
{
    /// <summary>
    /// Cluster membership: with no seed and no discovery the node forms a cluster of its own by joining
    /// itself; with seeds it joins them; in Kubernetes, the pods listed through the Kubernetes API are the
    /// seeds (WithKubernetesJoin). Split brain resolver keep-majority after StableAfter.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaClustering(this AkkaConfigurationBuilder b, CollectorRuntime rt)
    {
        var s = rt.Settings;
        var seeds = s.Discovery == DiscoveryModes.Seeds ? s.Seeds.Select(x => $"{Protocol(rt)}://{SystemName}@{x}").ToArray() : [];
        // The node's NumberOfShards as a role: shards and the coordinator go only to nodes of the same number.
        // And what its repository is: every node of a cluster collects into the same one (RepositoryGuard).
        string[] roles = rt.RepositoryIdentity is { } id ? [ShardRole(s), RepositoryGuard.RolePrefix + id] : [ShardRole(s)];
        b.WithClustering(new ClusterOptions { SeedNodes = seeds, LogInfo = s.Debug, Roles = roles });
        b.AddHocon(SplitBrainHocon(s), HoconAddMode.Prepend);
        b.AddHocon(FailureDetectionHocon(s), HoconAddMode.Prepend);
        b.AddHocon(SeedJoinHocon, HoconAddMode.Prepend);
        b.AddHocon(AppVersionHocon, HoconAddMode.Prepend);
        if (s.IsOneNode)
            b.AddStartup((system, _) =>
            {
                var cluster = Cluster.Get(system);
                cluster.Join(cluster.SelfAddress);
            });
        return b;
    }

    /// <summary>
    /// The build's version as the member's app-version, whatever the entry assembly (a test host, the lab):
    /// each node writes the wire format all members read (WireFormats), and sharding neither rebalances while
    /// versions are mixed nor allocates to older nodes.
    /// </summary>
    public static readonly string AppVersionHocon = $"akka.cluster.app-version = \"{CollectorVersion.Text}\"";

    public const string ShardRolePrefix = "powa-shards-";

    /// <summary>The cluster role that carries a node's NumberOfShards (ShardCountGuard).</summary>
    public static string ShardRole(CollectorSettings s) => ShardRolePrefix + s.NumberOfShards;

    /// <summary>A node whose NumberOfShards is not its cluster's leaves it (exit code 1): ShardCountGuard.</summary>
    public static AkkaConfigurationBuilder WithShardCountGuard(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, _) => system.ActorOf(ShardCountGuard.Props(rt.Settings.NumberOfShards), "shard-count-guard"));

    /// <summary>A node whose repository is not its cluster's leaves it (exit code 1): RepositoryGuard.</summary>
    public static AkkaConfigurationBuilder WithRepositoryGuard(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        rt.RepositoryIdentity is not { } id ? b
            : b.WithActors((system, _) => system.ActorOf(RepositoryGuard.Props(id, Configuration.Dsn.Describe(rt.Repository)), "repository-guard"));

    /// <summary>
    /// keep-majority: when nodes become unreachable and membership stays so for stable-after, the side with
    /// more than half of the nodes downs the others, and a side in minority downs itself (its process
    /// exits, so that Kubernetes or the service manager restarts it).
    /// </summary>
    public static string SplitBrainHocon(CollectorSettings s) => $$"""
        akka.cluster {
          downing-provider-class = "Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster"
          split-brain-resolver {
            active-strategy = keep-majority
            stable-after = {{(int)s.StableAfter.TotalMilliseconds}}ms
            down-all-when-unstable = on
          }
          run-coordinated-shutdown-when-down = on
          # How long after a node is downed its shards and singletons start elsewhere (by default, with SBR,
          # stable-after again). The minority side of a partition downs itself after the same stable-after
          # and stops its servers at once (WithStopWhenDowned), and the repository refuses two snapshots of
          # one server at the same time anyway: a few seconds are enough, and a dead node's servers are not
          # kept waiting.
          down-removal-margin = {{(int)DownRemovalMargin(s).TotalMilliseconds}}ms
        }
        """;

    /// <summary>
    /// How long the first seed asks the other seeds to let it in before it forms a cluster of its own (Akka's
    /// seed-node-timeout, 5 s): a first seed restarted in a rolling upgrade finds the others' connections to its
    /// address closed for 5 s (Akka gates an address it just lost), and on a loaded machine they may answer late;
    /// after 5 s it formed a second cluster beside the first (measured: powa-lab rollout, 1,000 servers, a
    /// saturated 2-core machine: two clusters collected every server, the repository's lock and fence refused
    /// 2,000 snapshots). The same setting is how long every other seed waits before it asks again when no seed
    /// let it in: on a cold start the seeds that run but are in no cluster yet say so at once, and the others
    /// waited the whole 30 s once this was 30 s (measured: powa-lab scale, 1,000 servers, every server allocated
    /// 41 s after the start and 110 not snapshotted within their first two intervals). 12 s is past the 5 s gate
    /// with room for a loaded machine, and costs a cold start 12 s at most.
    /// </summary>
    public const string SeedJoinHocon = "akka.cluster.seed-node-timeout = 12s";

    /// <summary>
    /// A node is marked unreachable when it has sent no heartbeat for HeartbeatPause (plus the phi detector's
    /// margin, under a second): Akka's 3 s mark a node that is only busy on a loaded machine.
    /// </summary>
    public static string FailureDetectionHocon(CollectorSettings s) =>
        $"akka.cluster.failure-detector.acceptable-heartbeat-pause = {(int)s.HeartbeatPause.TotalMilliseconds}ms";

    /// <summary>
    /// Akka's cluster and remoting internals (heartbeats, gossip, the shard coordinator, the endpoints) run on
    /// threads of their own instead of the .NET thread pool, where they would queue behind the collection's
    /// work (Npgsql's continuations, COPY parsing) when a node is busy: a heartbeat waits for a CPU, never for
    /// a queue of snapshots.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaDispatchers(this AkkaConfigurationBuilder b) =>
        b.AddHocon(DispatchersHocon, HoconAddMode.Prepend);

    public const string DispatchersHocon = """
        akka.actor.internal-dispatcher {
          executor = fork-join-executor
          fork-join-executor { parallelism-min = 2, parallelism-factor = 1.0, parallelism-max = 4 }
        }
        akka.remote.default-remote-dispatcher {
          executor = fork-join-executor
          fork-join-executor { parallelism-min = 2, parallelism-factor = 0.5, parallelism-max = 2 }
        }
        """;

    public static TimeSpan DownRemovalMargin(CollectorSettings s) =>
        s.StableAfter < TimeSpan.FromSeconds(3) ? s.StableAfter : TimeSpan.FromSeconds(3);

    /// <summary>
    /// Kubernetes: the pods are listed through the Kubernetes API and become the seed nodes (KubernetesJoiner).
    /// </summary>
    public static AkkaConfigurationBuilder WithKubernetesJoin(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        rt.Settings.Discovery != DiscoveryModes.Kubernetes
            ? b
            : b.WithActors((system, _) => system.ActorOf(KubernetesJoiner.Props(rt.Settings.Kubernetes), "kubernetes-joiner"));

    /// <summary>
    /// Shards and hand-off: least-shard allocation, rebalancing at most 5 shards every 10 s; on SIGTERM a shard's entities get HandOffTimeout to finish their snapshot in flight,
    /// then the node's writers store what they left (StoreWhatWasReadPhase) before the node leaves the cluster.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaSharding(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.AddHocon(ShardingHocon(rt.Settings), HoconAddMode.Prepend);

    public static string ShardingHocon(CollectorSettings s) => $$"""
        akka.cluster.sharding {
          least-shard-allocation-strategy {
            # A node that joins a running cluster takes its share a few shards at a time (each moved server
            # stops, reads its row and connects again on its new node, through that node's ConnectRamp).
            rebalance-absolute-limit = 5
            rebalance-relative-limit = 0.2
          }
          rebalance-interval = 10s
          handoff-timeout = {{(int)s.HandOffTimeout.TotalMilliseconds}}ms
        }
        akka.coordinated-shutdown.phases.cluster-sharding-shutdown-region.timeout = {{(int)(s.HandOffTimeout + TimeSpan.FromSeconds(5)).TotalMilliseconds}}ms
        akka.coordinated-shutdown.phases.{{AkkaConfiguration.StoreWhatWasReadPhase}} {
          depends-on = [cluster-sharding-shutdown-region]
          timeout = {{(int)(s.HandOffTimeout + 2 * AkkaConfiguration.UnstoredSpoolTimeout + TimeSpan.FromSeconds(5)).TotalMilliseconds}}ms
        }
        akka.coordinated-shutdown.phases.cluster-leave.depends-on = [cluster-sharding-shutdown-region, {{AkkaConfiguration.StoreWhatWasReadPhase}}]
        """;
}
