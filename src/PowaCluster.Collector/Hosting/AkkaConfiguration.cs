using Akka.Cluster;
using Akka.Hosting;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// The node's Akka.NET set-up, one extension method per concern, put together by WithPowaCollector: this class has
/// the node's own (logging, the scheduler, the dispatchers of Akka's internals, its services and metrics);
/// RemotingConfiguration, ClusterConfiguration, ShardingConfiguration and NodeActorsConfiguration the others.
/// </summary>
public static class AkkaConfiguration
{
    public const string SystemName = "powa-cluster";

    /// <summary>
    /// Akka's log goes through Microsoft.Extensions.Logging (AkkaLogger, which applies the log filters);
    /// --debug / "debug": true turns on debug.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaLogging(this AkkaConfigurationBuilder b, CollectorRuntime rt,
        Microsoft.Extensions.Logging.LogLevel? minimumLevel = null) =>
        b.AddHocon(AkkaStdoutLogger.Hocon(rt.Settings.LogFormat), HoconAddMode.Prepend).ConfigureLoggers(l =>
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
            l.AddLogger<AkkaLogger>();
            // A stranger's failed TLS handshakes: one line per host a minute, not an error with a stack trace per attempt.
            if (rt.Tls is { } tls) l.WithLogFilter(f => f.Add(tls.Refusals.Filter));
        });

    /// <summary>
    /// The scheduler's wheel ticks every 100 ms instead of 10 ms: every Akka timer here is a second or more
    /// (snapshot ticks have timers of their own), and an idle collector should not wake up a hundred times
    /// a second.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaScheduler(this AkkaConfigurationBuilder b) =>
        b.AddHocon("akka.scheduler.tick-duration = 100ms", HoconAddMode.Prepend);

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

    /// <summary>The node's clock and instruments (NodeServices): CollectorRuntime's, for every actor, before any starts.</summary>
    public static AkkaConfigurationBuilder WithNodeServices(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, _) => NodeServices.Use(system, rt.Time, rt.Metrics));

    /// <summary>The cluster's members by status, for the powa.cluster.members gauge (CollectorMetrics).</summary>
    public static AkkaConfigurationBuilder WithPowaMetrics(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.AddStartup((system, _) =>
        {
            var cluster = Cluster.Get(system);
            rt.Metrics.ObserveMembers(() =>
            {
                var state = cluster.State;
                var unreachable = state.Unreachable;
                return state.Members.GroupBy(m => unreachable.Contains(m) ? "unreachable" : m.Status.ToString().ToLowerInvariant())
                    .Select(g => (g.Key, g.Count())).ToList();
            });
        });

    /// <summary>The whole collector node.</summary>
    public static AkkaConfigurationBuilder WithPowaCollector(this AkkaConfigurationBuilder b, CollectorRuntime rt,
        Microsoft.Extensions.Logging.LogLevel? minimumLevel = null) =>
        b.WithPowaLogging(rt, minimumLevel)
         .WithNodeServices(rt)
         .WithPowaScheduler()
         .WithPowaDispatchers()
         .WithPowaRemoting(rt)
         .WithPowaSerialization()
         .WithPowaClustering(rt)
         .WithShardCountGuard(rt)
         .WithRepositoryGuard(rt)
         .WithKubernetesJoin(rt)
         .WithPowaSharding(rt)
         .WithSnapshotWriters(rt)
         .WithSpool(rt)
         .WithStateKeeper(rt)
         .WithConnectRamp(rt)
         .WithServerCollectors(rt)
         .WithStopWhenDowned()
         .WithFleetCoordinator(rt)
         .WithPowaMetrics(rt);
}
