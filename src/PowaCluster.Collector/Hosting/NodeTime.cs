using Akka.Actor;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// The node's clock, one per actor system: every actor that reads the time or waits for it asks it here
/// (NodeTime.Of), never the wall clock itself, so that a test can run a node on a FakeTimeProvider. The host
/// registers CollectorRuntime.Time (WithNodeTime) before any actor starts; an actor system without it
/// (actor unit tests) gets TimeProvider.System.
/// </summary>
public sealed class NodeTime(TimeProvider provider) : IExtension
{
    public TimeProvider Provider { get; } = provider;

    public static TimeProvider Of(ActorSystem system) => system.WithExtension<NodeTime, NodeTimeId>().Provider;

    /// <summary>Registers <paramref name="provider"/> as the system's clock (the first registration wins, as for every extension).</summary>
    public static void Use(ActorSystem system, TimeProvider provider) => system.RegisterExtension(new NodeTimeId(provider));
}

public sealed class NodeTimeId(TimeProvider? provider) : ExtensionIdProvider<NodeTime>
{
    public NodeTimeId() : this(null) { }

    public override NodeTime CreateExtension(ExtendedActorSystem system) => new(provider ?? TimeProvider.System);
}
