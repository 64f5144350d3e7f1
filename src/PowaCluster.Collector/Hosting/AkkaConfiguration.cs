using Akka;
using Akka.Actor;
using Akka.Event;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Akka.Remote.Hosting;
using PowaCluster.Collector.Configuration;
using PowaCluster.Collector.Actors;
using PowaCluster.Collector.Serialization;
using PowaCluster.Collector.Sharding;

namespace PowaCluster.Collector.Hosting;

/// <summary>The node's Akka.NET set-up, one extension method per concern.</summary>
public static partial class AkkaConfiguration
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
    /// Akka.Remote endpoint of the node (port 0 picks a free one). It binds ClusterHost and tells the other
    /// nodes ClusterPublicHost when set (behind NAT; in Kubernetes, the pod IP). With cluster TLS (the default
    /// of a multi-node cluster) every association is mutual TLS: both sides present a certificate, and each
    /// accepts the other's only when it chains to the cluster's CA (ClusterTls.Validator, which logs a refusal
    /// in one line); the addresses are akka.ssl.tcp://.
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaRemoting(this AkkaConfigurationBuilder b, CollectorRuntime rt)
    {
        var options = new RemoteOptions
        {
            HostName = rt.Settings.ClusterHost,
            PublicHostName = string.IsNullOrWhiteSpace(rt.Settings.ClusterPublicHost) ? null : rt.Settings.ClusterPublicHost,
            Port = rt.Settings.ClusterPort,
        };
        if (rt.Tls is { } tls)
        {
            options.EnableSsl = true;
            options.Ssl = new SslOptions
            {
                X509Certificate = tls.Certificate,
                RequireMutualAuthentication = true,
                SuppressValidation = false,
                ValidateCertificateHostname = false,
                CustomValidator = tls.Validator,
            };
            // Its expiry: a metric, and a warning at start and every day from 14 days before.
            rt.Metrics.ObserveCertificate(() => (tls.NotAfterUtc - rt.Time.GetUtcNow().UtcDateTime).TotalSeconds);
            b.AddStartup((system, _) => system.Scheduler.Advanced.ScheduleRepeatedly(TimeSpan.Zero, TimeSpan.FromDays(1), () =>
            {
                if (tls.ExpiryProblem(rt.Time.GetUtcNow().UtcDateTime) is { } problem) system.Log.Warning(problem);
            }));
        }
        else if (!rt.Settings.IsOneNode || !rt.Settings.ClusterOnLoopback)
        {
            b.AddStartup((system, _) => system.Log.Warning(
                "Cluster TLS is off (Tls:Mode off): anyone who reaches {0}:{1} can join this cluster and read what its nodes send each other",
                rt.Settings.ClusterHost, rt.Settings.ClusterPort));
        }
        b.AddHocon(UntrustedModeHocon(rt.Settings), HoconAddMode.Prepend);
        return b.WithRemoting(options);
    }

    /// <summary>
    /// Untrusted mode: a peer cannot deploy actors here, send PoisonPill, Kill or another system command, or
    /// reach an actor by path except the ones the cluster itself talks to that way (membership, heartbeats,
    /// the singletons and their proxies, the shard regions and coordinator, the replicator of the coordinator's
    /// state, named after the node's shard role) and the coordinator's reload (RequestReload). Mutual TLS decides
    /// who is a peer.
    /// </summary>
    public static string UntrustedModeHocon(CollectorSettings s) => $$"""
        akka.remote.untrusted-mode = on
        akka.remote.trusted-selection-paths = [
          "/system/cluster/core/daemon", "/system/cluster/heartbeatReceiver", "/system/remote-watcher",
          "/system/sharding/server-collectorCoordinator", "/system/sharding/server-collectorCoordinator/singleton",
          "/system/sharding/server-collectorCoordinator/singleton/coordinator", "/system/sharding/server-collector",
          "/system/sharding/{{Uri.EscapeDataString(ShardRole(s))}}Replicator", "/system/ddataReplicator",
          "/user/fleet-coordinator", "{{CoordinatorPath}}", "/user/{{StateKeeper.Name}}"
        ]
        """;

    /// <summary>
    /// What crosses the network: the collector's messages (IWireMessage) through ClusterMessageSerializer,
    /// field by field; Akka's own through Akka's protobuf serializers; and nothing through Akka's JSON fallback,
    /// whose payloads name the .NET type to build (RefusingSerializer takes its place and its identifier).
    /// </summary>
    public static AkkaConfigurationBuilder WithPowaSerialization(this AkkaConfigurationBuilder b) =>
        b.AddHocon(SerializationHocon, HoconAddMode.Prepend);

    public static readonly string SerializationHocon = $$"""
        akka.actor {
          serializers {
            json = "{{ShortName(typeof(RefusingSerializer))}}"
            powa = "{{ShortName(typeof(ClusterMessageSerializer))}}"
          }
          serialization-bindings {
            "{{ShortName(typeof(IWireMessage))}}" = powa
          }
          serialization-identifiers {
            "{{ShortName(typeof(RefusingSerializer))}}" = 1
            "{{ShortName(typeof(ClusterMessageSerializer))}}" = {{ClusterMessageSerializer.Id}}
          }
        }
        """;

    static string ShortName(Type t) => $"{t.FullName}, {t.Assembly.GetName().Name}";

    /// <summary>The protocol of the node addresses: akka.ssl.tcp with cluster TLS, akka.tcp without.</summary>
    public static string Protocol(CollectorRuntime rt) => rt.Tls is null ? "akka.tcp" : "akka.ssl.tcp";

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

    /// <summary>The CoordinatedShutdown phase in which a stopping node's writers store what its servers left: after the hand-off, before it leaves.</summary>
    public const string StoreWhatWasReadPhase = "powa-store-what-was-read";

    /// <summary>How long a stopping node spools what its writers did not store (and then waits for the stores in flight).</summary>
    public static readonly TimeSpan UnstoredSpoolTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The node-local pool of repository writers, drained when the node stops.</summary>
    public static AkkaConfigurationBuilder WithSnapshotWriters(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, registry) =>
        {
            var pool = system.ActorOf(SnapshotWriterPool.Props(rt.Settings, rt.Repository, rt.Powa, rt.RepositoryIdentity), "snapshot-writers");
            registry.Register<SnapshotWriterPool>(pool);
            // A stopping node stores what its servers read before it goes (they leave it to the pool when their
            // shards are handed off), within the hand-off timeout, while it is still a member: its SpoolKeeper's
            // word that a server's snapshots are stored reaches the server's new entity.
            var cs = CoordinatedShutdown.Get(system);
            cs.AddTask(StoreWhatWasReadPhase, "store-what-was-read", async () =>
            {
                try
                {
                    await pool.Ask<WritersDrained>(DrainWriters.Instance, rt.Settings.HandOffTimeout).ConfigureAwait(false);
                    return Done.Instance;
                }
                catch (Exception e) when (e is AskTimeoutException or TaskCanceledException) { }
                // What the repository did not take in time is not dropped: it goes to the spool, as in an outage.
                try
                {
                    var left = await pool.Ask<UnstoredSpooled>(SpoolUnstored.Instance, UnstoredSpoolTimeout).ConfigureAwait(false);
                    system.Log.Warning("Stopping: {0} snapshots the repository did not store within {1:F0} s (HandOffTimeout) are spooled in {2}, " +
                                       "to be replayed in order{3}{4}", left.Spooled, rt.Settings.HandOffTimeout.TotalSeconds,
                        rt.Spool.Directory, left.Lost > 0 ? $"; {left.Lost} lost: {left.Error ?? "this node has no spool"}" : "",
                        left.Storing > 0 ? $"; {left.Storing} being stored still" : "");
                    if (left.Storing > 0)
                        await pool.Ask<WritersDrained>(DrainWriters.Instance, UnstoredSpoolTimeout).ConfigureAwait(false);
                }
                catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
                {
                    system.Log.Warning("Stopping with snapshots not stored nor spooled within {0:F0} s", (rt.Settings.HandOffTimeout + UnstoredSpoolTimeout).TotalSeconds);
                }
                return Done.Instance;
            });
        });

    /// <summary>
    /// The node's spool (snapshots the repository cannot store, replayed later) and its SpoolKeeper; a spool
    /// that cannot be used is said once, and the node collects without it (what the repository cannot take is lost).
    /// </summary>
    public static AkkaConfigurationBuilder WithSpool(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, registry) =>
        {
            var spool = rt.Spool;
            if (spool.Problem is { } problem)
            {
                system.Log.Warning("No spool on this node: {0}; snapshots the repository cannot store are lost", problem);
                return;
            }
            spool.Warn = m => system.Log.Warning(m);
            if (spool.Moved is { } moved) system.Log.Warning("Spool: {0}", moved);
            foreach (var skipped in spool.NotScanned) system.Log.Warning("Spool: {0}", skipped);
            rt.Metrics.ObserveSpool(spool.Stats);
            var stats = spool.Stats();
            system.Log.Info("Spool in {0} (at most {1:F0} MB and {2:F0} h){3}", spool.Directory, spool.MaxBytes / 1048576.0, spool.MaxAge.TotalHours,
                stats.Snapshots > 0 ? $": {stats.Snapshots} snapshots ({stats.Bytes / 1048576.0:F1} MB) left by a previous run, replayed once the repository takes them" : "");
            registry.Register<SpoolKeeper>(system.ActorOf(SpoolKeeper.Props(spool, registry.Get<SnapshotWriterPool>(), rt.Settings), "spool-keeper"));
        });

    /// <summary>What the node keeps to collect while the repository is down (StateKeeper, NodeState).</summary>
    public static AkkaConfigurationBuilder WithStateKeeper(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, registry) =>
            registry.Register<StateKeeper>(system.ActorOf(StateKeeper.Props(rt, registry.Get<SnapshotWriterPool>()), StateKeeper.Name)));

    /// <summary>The node-local pace of remote connections (ConnectRamp).</summary>
    public static AkkaConfigurationBuilder WithConnectRamp(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, registry) => registry.Register<ConnectRamp>(system.ActorOf(ConnectRamp.Props(rt.Settings), "connect-ramp")));

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
                Role = ShardRole(rt.Settings),
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
            new ClusterSingletonOptions { Role = ShardRole(rt.Settings) },
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

    /// <summary>The node's clock and instruments (NodeServices): CollectorRuntime's, for every actor, before any starts.</summary>
    public static AkkaConfigurationBuilder WithNodeServices(this AkkaConfigurationBuilder b, CollectorRuntime rt) =>
        b.WithActors((system, _) => NodeServices.Use(system, rt.Time, rt.Metrics));

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
