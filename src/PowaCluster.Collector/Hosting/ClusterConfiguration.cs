using Akka;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Event;
using Akka.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// Cluster membership: joining (seeds, Kubernetes), failure detection, downing, and the guards that make a node
/// that does not belong leave.
/// </summary>
public static class ClusterConfiguration
{
    /// <summary>
    /// Cluster membership: with no seed and no discovery the node forms a cluster of its own by joining
    /// itself; with seeds it joins them; in Kubernetes, the pods listed through the Kubernetes API are the
    /// seeds (WithKubernetesJoin). Split brain resolver keep-majority after StableAfter.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaClustering(this AkkaConfigurationBuilder b, CollectorRuntime rt)
    {
        var s = rt.Settings;
        var seeds = s.Discovery == DiscoveryModes.Seeds ? s.Seeds.Select(x => $"{RemotingConfiguration.Protocol(rt)}://{AkkaConfiguration.SystemName}@{x}").ToArray() : [];
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
    /// A node that is downed (the minority side of a partition, or one the others found unreachable) stops its
    /// servers at once, first thing in its CoordinatedShutdown: the majority starts them elsewhere after
    /// down-removal-margin, and the graceful hand-off would wait for a shard coordinator that is on the other
    /// side, collecting meanwhile. A snapshot in flight is rolled back.
    /// </summary>
    public static AkkaConfigurationBuilder WithStopWhenDowned(this AkkaConfigurationBuilder b) =>
        b.AddStartup((system, _) =>
        {
            var cs = CoordinatedShutdown.Get(system);
            cs.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "stop-servers-when-downed", async () =>
            {
                if (cs.ShutdownReason is not CoordinatedShutdown.ClusterDowningReason) return Done.Instance;
                if (!ActorRegistry.For(system).TryGet<ServerCollector>(out var region)) return Done.Instance;
                system.Log.Warning("This node was downed: stopping its servers now; the other nodes take them over");
                try { await region.GracefulStop(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
                catch (TaskCanceledException) { /* stopped anyway when the actor system terminates */ }
                return Done.Instance;
            });
        });
}
