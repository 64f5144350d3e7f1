using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Sharding;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// The servers spread over the cluster: sharding's settings, the ServerCollector entities, and the FleetCoordinator
/// singleton that keeps them collecting.
/// </summary>
public static class ShardingConfiguration
{
    /// <summary>
    /// Shards and hand-off: least-shard allocation, rebalancing at most 5 shards every 10 s; on SIGTERM a shard's entities get HandOffTimeout to finish their snapshot in flight,
    /// then the node's writers store what they left (NodeActorsConfiguration.StoreWhatWasReadPhase) before the node leaves the cluster.
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
        akka.coordinated-shutdown.phases.{{NodeActorsConfiguration.StoreWhatWasReadPhase}} {
          depends-on = [cluster-sharding-shutdown-region]
          timeout = {{(int)(s.HandOffTimeout + 2 * NodeActorsConfiguration.UnstoredSpoolTimeout + TimeSpan.FromSeconds(5)).TotalMilliseconds}}ms
        }
        akka.coordinated-shutdown.phases.cluster-leave.depends-on = [cluster-sharding-shutdown-region, {{NodeActorsConfiguration.StoreWhatWasReadPhase}}]
        """;

    /// <summary>
    /// One ServerCollector entity per srvid, spread over the cluster. No remember-entities and no persistence:
    /// the coordinator re-creates entities, and they restore their schedule from the repository.
    /// </summary>
    public static AkkaConfigurationBuilder WithServerCollectors(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithShardRegion<ServerCollector>(
            "server-collector",
            (_, registry, _) => _ => ServerCollector.Props(rt.Settings, rt.Powa.Version, registry.Get<SnapshotWriterPool>(),
                rt.Stages, registry.Get<FleetCoordinator>(), registry.Get<ConnectRamp>(), rt.Spool.Usable ? rt.Spool : null,
                registry.TryGet<SpoolKeeper>(out var keeper) ? keeper : null, registry.Get<StateKeeper>()),
            new ServerMessageExtractor(rt.Settings.NumberOfShards),
            new ShardOptions
            {
                RememberEntities = false,
                StateStoreMode = StateStoreMode.DData,
                ShouldPassivateIdleEntities = false,
                HandOffStopMessage = StopEntity.Instance,
                Role = ClusterConfiguration.ShardRole(rt.Settings),
            });

    /// <summary>
    /// The FleetCoordinator singleton (on the oldest node), and a proxy to it on every node: the registry's
    /// FleetCoordinator entry is that proxy (entities tell it when they are handed off).
    /// </summary>
    public static AkkaConfigurationBuilder WithFleetCoordinator(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        // Akka.NET 1.5.73's proxy logs "failed to find an associated singleton ... after 30 seconds" the moment
        // it starts looking (its timer has no initial delay), on every node, every time the singleton moves:
        // a false alarm for an operator. The proxy only carries hand-off notices; the FleetCoordinator logs
        // where it runs.
        b.AddHocon("akka.cluster.singleton-proxy.log-singleton-identification-failure = off", HoconAddMode.Prepend)
         .WithSingleton<FleetCoordinator>(
            "fleet-coordinator",
            (_, registry, _) => FleetCoordinator.Props(rt.Settings, rt.Repository, rt.Powa, registry.Get<ServerCollector>(),
                registry.Get<SnapshotWriterPool>(), registry.Get<StateKeeper>()),
            new ClusterSingletonOptions { Role = ClusterConfiguration.ShardRole(rt.Settings) },
            createProxyToo: true);

    /// <summary>Where the FleetCoordinator singleton lives on the node that hosts it.</summary>
    public const string CoordinatorPath = "/user/fleet-coordinator/fleet-coordinator";

    /// <summary>
    /// SIGHUP: tells the coordinator, wherever it runs, to reload. Sent to every member's singleton path; only
    /// the node that hosts it has an actor there.
    /// </summary>
    public static void RequestReload(ActorSystem system)
    {
        foreach (var member in Cluster.Get(system).State.Members)
            system.ActorSelection(member.Address + CoordinatorPath).Tell(Reload.Instance);
    }
}
