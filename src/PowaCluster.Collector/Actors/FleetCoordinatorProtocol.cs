using PowaCluster.Collector.Configuration;

namespace PowaCluster.Collector.Actors;

/// <summary>Re-read powa_servers now (the periodic resync sends it to itself; RELOAD will too).</summary>
public sealed record Resync
{
    public static readonly Resync Instance = new();
}

/// <summary>Asks the coordinator which servers it keeps alive.</summary>
public sealed record GetFleet
{
    public static readonly GetFleet Instance = new();
}

/// <summary>The servers the coordinator keeps alive, and when it last read powa_servers successfully.</summary>
public sealed record Fleet(IReadOnlyList<ServerConfig> Servers, DateTimeOffset? LastResync, string? LastError);

/// <summary>What the coordinator did with a control request; for tests and logs.</summary>
public sealed record ControlHandled(string Command, string? Reply);

/// <summary>SIGHUP on any node: the same path as RELOAD (re-read, refresh every server), without a reply.</summary>
public sealed record Reload
{
    public static readonly Reload Instance = new();
}

/// <summary>
/// From an entity that sharding stopped to move its shard (SIGTERM of its node, rebalance): the coordinator
/// sends it EnsureCollecting again, which starts it on its shard's new node.
/// </summary>
public sealed record ServerHandedOff(int SrvId);
