using PowaCluster.Collector.Serialization;

namespace PowaCluster.Collector.Actors;

/// <summary>Re-read powa_servers now (the periodic resync sends it to itself; RELOAD will too).</summary>
public sealed record Resync
{
    public static readonly Resync Instance = new();
}

/// <summary>SIGHUP on any node: the same path as RELOAD (re-read, refresh every server), without a reply.</summary>
public sealed record Reload : IWireMessage
{
    public static readonly Reload Instance = new();
}

/// <summary>
/// From an entity that sharding stopped to move its shard (SIGTERM of its node, rebalance): the coordinator
/// sends it EnsureCollecting again, which starts it on its shard's new node.
/// </summary>
public sealed record ServerHandedOff(int SrvId) : IWireMessage;
