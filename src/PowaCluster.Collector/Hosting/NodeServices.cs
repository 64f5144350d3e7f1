using Akka.Actor;
using PowaCluster.Collector.Telemetry;

namespace PowaCluster.Collector.Hosting;

/// <summary>
/// What every actor of a node shares and no actor owns, one per actor system: the node's clock and its
/// instruments. An actor that reads the time or waits for it asks the clock here, never the wall clock itself,
/// so that a test can run a node on a FakeTimeProvider; a node's CollectorMetrics holds its own servers, pool
/// and clock (the instruments behind them are the process's: CollectorMetrics says why). The host registers CollectorRuntime's (WithNodeServices) before any actor starts;
/// an actor system without it (actor unit tests) gets TimeProvider.System and instruments of its own.
/// </summary>
public sealed class NodeServices(TimeProvider time, CollectorMetrics metrics) : IExtension
{
    public TimeProvider Time { get; } = time;
    public CollectorMetrics Metrics { get; } = metrics;

    public static NodeServices Of(ActorSystem system) => system.WithExtension<NodeServices, NodeServicesId>();

    /// <summary>Registers the node's clock and instruments, before any actor asks for them.</summary>
    /// <exception cref="InvalidOperationException">an actor asked first and got the defaults (the first registration wins, as
    /// for every extension): the node would run on two clocks</exception>
    public static void Use(ActorSystem system, TimeProvider time, CollectorMetrics metrics)
    {
        var registered = (NodeServices)system.RegisterExtension(new NodeServicesId(time, metrics));
        if (!ReferenceEquals(registered.Time, time) || !ReferenceEquals(registered.Metrics, metrics))
            throw new InvalidOperationException("NodeServices were asked for before the node registered its own (WithNodeServices comes first)");
    }
}

public sealed class NodeServicesId(TimeProvider? time, CollectorMetrics? metrics) : ExtensionIdProvider<NodeServices>
{
    public NodeServicesId() : this(null, null) { }

    public override NodeServices CreateExtension(ExtendedActorSystem system)
    {
        if (time is not null && metrics is not null) return new(time, metrics);
        // Instruments of the system's own: they go with it.
        var own = new CollectorMetrics(TimeProvider.System);
        system.RegisterOnTermination(own.Dispose);
        return new(time ?? TimeProvider.System, own);
    }
}
