using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Akka.Remote.Hosting;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Sharding;

namespace PowaCluster.Collector.Hosting;

/// <summary>The node's Akka.NET set-up, one extension method per concern.</summary>
public static class AkkaConfiguration
{
    public const string SystemName = "powa-cluster";

    /// <summary>Akka's log goes through Microsoft.Extensions.Logging; --debug / "debug": true turns on debug.</summary>
    public static AkkaConfigurationBuilder WithPowaLogging(this AkkaConfigurationBuilder b, CollectorRuntime rt,
        Microsoft.Extensions.Logging.LogLevel? minimumLevel = null) =>
        b.ConfigureLoggers(l =>
        {
            l.LogLevel = minimumLevel switch
            {
                null => rt.Settings.Debug ? Akka.Event.LogLevel.DebugLevel : Akka.Event.LogLevel.InfoLevel,
                <= Microsoft.Extensions.Logging.LogLevel.Debug => Akka.Event.LogLevel.DebugLevel,
                Microsoft.Extensions.Logging.LogLevel.Information => Akka.Event.LogLevel.InfoLevel,
                Microsoft.Extensions.Logging.LogLevel.Warning => Akka.Event.LogLevel.WarningLevel,
                _ => Akka.Event.LogLevel.ErrorLevel,
            };
            l.ClearLoggers();
            l.AddLoggerFactory();
        });

    /// <summary>
    /// The scheduler's wheel ticks every 50 ms instead of 10 ms: every timer here is a second or more, and
    /// an idle collector should not wake up a hundred times a second.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaScheduler(this AkkaConfigurationBuilder b) =>
        b.AddHocon("akka.scheduler.tick-duration = 50ms", HoconAddMode.Prepend);

    /// <summary>Akka.Remote endpoint of the node (port 0 picks a free one).</summary>
    public static AkkaConfigurationBuilder WithPowaRemoting(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithRemoting(new RemoteOptions { HostName = rt.Settings.ClusterHost, Port = rt.Settings.ClusterPort });

    /// <summary>
    /// Cluster membership. With no seed the node forms a cluster of its own by joining itself;
    /// with seeds it joins them.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaClustering(this AkkaConfigurationBuilder b, CollectorRuntime rt)
    {
        var seeds = rt.Settings.Seeds.Select(s => $"akka.tcp://{SystemName}@{s}").ToArray();
        b.WithClustering(new ClusterOptions { SeedNodes = seeds, LogInfo = rt.Settings.Debug });
        if (seeds.Length == 0)
            b.AddStartup((system, _) =>
            {
                var cluster = Cluster.Get(system);
                cluster.Join(cluster.SelfAddress);
            });
        return b;
    }

    /// <summary>The node-local pool of repository writers.</summary>
    public static AkkaConfigurationBuilder WithSnapshotWriters(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, registry) =>
        {
            var pool = system.ActorOf(SnapshotWriterPool.Props(rt.Settings, rt.Repository), "snapshot-writers");
            registry.Register<SnapshotWriterPool>(pool);
        });

    /// <summary>
    /// One ServerCollector entity per srvid, spread over the cluster. No remember-entities and no persistence:
    /// the coordinator re-creates entities, and they restore their schedule from the repository.
    /// </summary>
    public static AkkaConfigurationBuilder WithServerCollectors(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithShardRegion<ServerCollector>(
            "server-collector",
            (_, registry, _) => _ => ServerCollector.Props(rt.Settings, rt.RepositoryPowa, registry.Get<SnapshotWriterPool>()),
            new ServerMessageExtractor(rt.Settings.NumberOfShards),
            new ShardOptions
            {
                RememberEntities = false,
                StateStoreMode = StateStoreMode.DData,
                ShouldPassivateIdleEntities = false,
                HandOffStopMessage = StopEntity.Instance,
            });

    /// <summary>The FleetCoordinator singleton (on the oldest node).</summary>
    public static AkkaConfigurationBuilder WithFleetCoordinator(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithSingleton<FleetCoordinator>(
            "fleet-coordinator",
            (_, registry, _) => FleetCoordinator.Props(rt.Settings, rt.Repository, registry.Get<ServerCollector>()),
            new ClusterSingletonOptions(),
            createProxyToo: false);

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

    /// <summary>The whole collector node.</summary>
    public static AkkaConfigurationBuilder WithPowaCollector(this AkkaConfigurationBuilder b, CollectorRuntime rt,
        Microsoft.Extensions.Logging.LogLevel? minimumLevel = null) =>
        b.WithPowaLogging(rt, minimumLevel)
         .WithPowaScheduler()
         .WithPowaRemoting(rt)
         .WithPowaClustering(rt)
         .WithSnapshotWriters(rt)
         .WithServerCollectors(rt)
         .WithFleetCoordinator(rt);
}
