using Akka.Actor;
using Akka.Cluster;

namespace PowaCluster.Collector.Hosting;

/// <summary>The actor system's cluster, or null when it runs without one (an actor unit test's system).</summary>
public static class NodeCluster
{
    public static Cluster? Of(ActorSystem system) =>
        ((ExtendedActorSystem)system).Provider is IClusterActorRefProvider ? Cluster.Get(system) : null;
}
