using Akka;
using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using PowaCluster.Collector.Actors;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// The node-local actors every entity of the node uses: the writer pool (drained when the node stops), the spool
/// and its keeper, the state keeper, the connection ramp.
/// </summary>
public static class NodeActorsConfiguration
{
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
}
